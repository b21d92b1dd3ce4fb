package com.dslrmobile.demo

import android.content.Intent
import android.graphics.Bitmap
import android.os.Bundle
import android.os.SystemClock
import android.widget.Button
import android.widget.ProgressBar
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import com.dslrmobile.core.TilePlan
import com.dslrmobile.core.TiledEnhancer
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** Enhances the photo tile by tile (the host's tiling, from the core) and shows it against the original. */
class ResultActivity : AppCompatActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_result)
        val compare = findViewById<BeforeAfterView>(R.id.compare)
        val status = findViewById<TextView>(R.id.status)
        val progress = findViewById<ProgressBar>(R.id.progress)
        val benchmark = findViewById<Button>(R.id.benchmark)
        val path = intent.getStringExtra(EXTRA_PHOTO) ?: return finish()
        val delegate = Delegate.valueOf(intent.getStringExtra(EXTRA_DELEGATE) ?: Delegate.CPU.name)
        val threads = intent.getIntExtra(EXTRA_THREADS, 4)
        val requestedTile = intent.getIntExtra(EXTRA_TILE, DEFAULT_TILE)
        benchmark.setOnClickListener {
            startActivity(Intent(this, BenchmarkActivity::class.java).putExtras(intent))
        }

        lifecycleScope.launch {
            try {
                val photo = withContext(Dispatchers.IO) { decodePhoto(path) }
                compare.setImages(photo, null)
                val (enhanced, message) = withContext(Dispatchers.Default) {
                    ModelSession(this@ResultActivity, delegate, threads, requestedTile, fallbackToCpu = true).use { session ->
                        val w = photo.width
                        val h = photo.height
                        val tiles = TilePlan.plan(h, w, session.tile, session.sidecar.halo).size
                        val start = SystemClock.elapsedRealtimeNanos()
                        val pixels = photo.argbPixels()
                        session.usePhoto(pixels, w, h)  // image-adaptive models: the photo's thumbnail, once
                        val out = TiledEnhancer.enhance(pixels, w, h, session.tile, session.sidecar.halo,
                            session.tileFunction(), session.sidecar.input.range) { done, total ->
                            runOnUiThread {
                                progress.max = total
                                progress.progress = done
                                status.text = getString(R.string.enhancing, done, total)
                            }
                        }
                        val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                        Bitmap.createBitmap(out, w, h, Bitmap.Config.ARGB_8888) to getString(R.string.enhanced,
                            session.sidecar.model, session.delegate.label, threads, w, h, ms, tiles, session.tile,
                            session.sidecar.halo)
                    }
                }
                compare.setImages(photo, enhanced)
                status.text = message
                benchmark.isEnabled = true
            } catch (e: Exception) {  // a missing model, an unsupported delegate, an undecodable photo
                status.text = e.message ?: e.toString()
            }
        }
    }
}
