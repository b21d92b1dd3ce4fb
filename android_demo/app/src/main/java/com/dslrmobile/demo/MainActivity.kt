package com.dslrmobile.demo

import android.Manifest
import android.content.Intent
import android.content.pm.PackageManager
import android.os.Bundle
import android.widget.Button
import android.widget.RadioGroup
import android.widget.SeekBar
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageCapture
import androidx.camera.core.ImageCaptureException
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import com.dslrmobile.core.SidecarException
import java.io.File
import java.io.IOException

const val EXTRA_PHOTO = "photo"
const val EXTRA_DELEGATE = "delegate"
const val EXTRA_THREADS = "threads"
const val EXTRA_TILE = "tile"
const val DEFAULT_TILE = 0  // 0: the sidecar's recommended tile (256 px, as python -m enhance); a fixed-size model uses its size

/** Capture (CameraX) or pick a photo; choose the delegate and the CPU thread count. */
class MainActivity : AppCompatActivity() {
    private lateinit var preview: PreviewView
    private lateinit var threads: SeekBar
    private lateinit var delegates: RadioGroup
    private var imageCapture: ImageCapture? = null

    private val cameraPermission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else Toast.makeText(this, R.string.no_camera, Toast.LENGTH_LONG).show()
    }

    private val picker = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) {
            try {
                openResult(copyToCache(this, uri))
            } catch (e: IOException) {
                Toast.makeText(this, e.message, Toast.LENGTH_LONG).show()
            }
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        preview = findViewById(R.id.preview)
        threads = findViewById(R.id.threads)
        delegates = findViewById(R.id.delegate)
        val threadsLabel = findViewById<TextView>(R.id.threads_label)
        threadsLabel.text = getString(R.string.threads, threads.progress + 1)
        threads.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) {
                threadsLabel.text = getString(R.string.threads, progress + 1)
            }
            override fun onStartTrackingTouch(bar: SeekBar) = Unit
            override fun onStopTrackingTouch(bar: SeekBar) = Unit
        })
        findViewById<TextView>(R.id.model_info).text = try {
            val s = loadSidecar(this)
            "${s.model} ${s.precision}: ${s.input.name} ${s.input.layout} ${s.input.dtype} in " +
                "[${s.input.range[0]}, ${s.input.range[1]}], halo ${s.halo}, " +
                (if (s.resizable) "any size (tiles of ${s.tileSize(DEFAULT_TILE)} px)" else "fixed ${s.input.height()} px tiles")
        } catch (e: SidecarException) {
            e.message
        }
        findViewById<Button>(R.id.pick).setOnClickListener {
            picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.capture).setOnClickListener { capture() }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            cameraPermission.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val capture = ImageCapture.Builder().setCaptureMode(ImageCapture.CAPTURE_MODE_MAXIMIZE_QUALITY).build()
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, capture)
            imageCapture = capture
        }, ContextCompat.getMainExecutor(this))
    }

    private fun capture() {
        val capture = imageCapture ?: run {
            Toast.makeText(this, R.string.no_camera, Toast.LENGTH_LONG).show()
            return
        }
        val file = File(cacheDir, "photo.jpg")
        capture.takePicture(ImageCapture.OutputFileOptions.Builder(file).build(), ContextCompat.getMainExecutor(this),
            object : ImageCapture.OnImageSavedCallback {
                override fun onImageSaved(output: ImageCapture.OutputFileResults) = openResult(file)
                override fun onError(exception: ImageCaptureException) {
                    Toast.makeText(this@MainActivity, getString(R.string.camera_failed, exception.message),
                        Toast.LENGTH_LONG).show()
                }
            })
    }

    private fun openResult(photo: File) {
        val delegate = if (delegates.checkedRadioButtonId == R.id.delegate_gpu) Delegate.GPU else Delegate.CPU
        startActivity(Intent(this, ResultActivity::class.java)
            .putExtra(EXTRA_PHOTO, photo.absolutePath)
            .putExtra(EXTRA_DELEGATE, delegate.name)
            .putExtra(EXTRA_THREADS, threads.progress + 1)
            .putExtra(EXTRA_TILE, DEFAULT_TILE))
    }
}
