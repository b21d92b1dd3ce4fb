package com.dslrmobile.demo

import android.content.Context
import com.dslrmobile.core.PixelConverter
import com.dslrmobile.core.Sidecar
import com.dslrmobile.core.SidecarException
import com.dslrmobile.core.Thumbnail
import com.dslrmobile.core.TileFunction
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.Closeable
import java.io.FileInputStream
import java.io.FileNotFoundException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** Where the exported model goes: `python -m export --target tflite --android-assets` copies it here. */
const val MODEL_ASSET = "model.tflite"
const val SIDECAR_ASSET = "model.json"

/** The delegates the app offers. Where the GPU delegate is unsupported a session falls back to XNNPACK when
 * asked to (the Result screen, which then names the delegate it used) or fails with the reason (Benchmark). */
enum class Delegate(val label: String) { GPU("GPU"), CPU("CPU/XNNPACK") }

/** Reads the sidecar from the app's assets; a missing or broken one is a [SidecarException] naming the problem. */
fun loadSidecar(context: Context): Sidecar {
    val text = try {
        context.assets.open(SIDECAR_ASSET).bufferedReader().use { it.readText() }
    } catch (e: FileNotFoundException) {
        throw SidecarException("no $SIDECAR_ASSET in the app's assets: run `python -m export --target tflite " +
            "--android-assets` in the repository and rebuild the app")
    }
    val sidecar = Sidecar.parse(text)
    if (sidecar.outputs.size != 1 || sidecar.outputs[0].channels() != 3) {
        throw SidecarException("${sidecar.model} is not a photo enhancer (outputs: " +
            sidecar.outputs.joinToString { it.name } + "); export dped_mobile, dped or mdie")
    }
    if (sidecar.input.layout != "NHWC") {
        throw SidecarException("the app runs NHWC .tflite files; the sidecar says ${sidecar.input.layout}")
    }
    return sidecar
}

/**
 * One LiteRT interpreter on one delegate, running square tiles of [tile] pixels through the model's signature.
 * Windows are padded to the tile size, so the interpreter is allocated once for one shape (what the GPU delegate
 * and XNNPACK's caches want); I/O follows the sidecar: float in its range, or int8/uint8 with its scale and
 * zero point.
 */
class ModelSession(
    context: Context,
    requested: Delegate,
    val threads: Int,
    requestedTile: Int,
    fallbackToCpu: Boolean = false,
) : Closeable {
    val sidecar: Sidecar = loadSidecar(context)
    val tile: Int = sidecar.tileSize(requestedTile)
    /** The delegate actually in use (CPU when the GPU was requested, unsupported and [fallbackToCpu] allowed). */
    val delegate: Delegate
    private val gpu: GpuDelegate?
    private val interpreter: Interpreter
    private val input: ByteBuffer
    private val output: ByteBuffer
    /** Image-adaptive models: the current photo's thumbnail ([usePhoto]), the same for every tile of it. */
    private val thumbnail: ByteBuffer? = sidecar.thumbnail?.let {
        ByteBuffer.allocateDirect(it.height() * it.width() * 3 * (if (it.isInteger) 1 else 4))
            .order(ByteOrder.nativeOrder())
    }
    private var thumbnailSet = false

    init {
        val options = Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true)
        gpu = if (requested == Delegate.GPU) {
            try {
                gpuDelegate()
            } catch (e: UnsupportedOperationException) {
                if (!fallbackToCpu) throw e
                null
            }
        } else {
            null
        }
        delegate = if (gpu != null) Delegate.GPU else Delegate.CPU
        gpu?.let { options.addDelegate(it) }
        interpreter = Interpreter(mapModel(context), options)
        if (sidecar.resizable) {  // the image input: H and W declared dynamic (the thumbnail's size is fixed)
            for (i in 0 until interpreter.inputTensorCount) {
                if (interpreter.getInputTensor(i).shapeSignature().contains(-1)) {
                    interpreter.resizeInput(i, intArrayOf(1, tile, tile, 3), true)  // strict
                }
            }
        }
        interpreter.allocateTensors()
        val inBytes = if (sidecar.input.isInteger) 1 else 4
        val outBytes = if (sidecar.outputs[0].isInteger) 1 else 4
        input = ByteBuffer.allocateDirect(tile * tile * 3 * inBytes).order(ByteOrder.nativeOrder())
        output = ByteBuffer.allocateDirect(tile * tile * 3 * outBytes).order(ByteOrder.nativeOrder())
    }

    /** The photo whose tiles come next: an image-adaptive model's thumbnail of it, made once (no-op otherwise). */
    fun usePhoto(argb: IntArray, width: Int, height: Int) {
        val spec = sidecar.thumbnail ?: return
        val buffer = thumbnail!!
        val values = Thumbnail.of(argb, width, height, spec.height(), spec.range[0], spec.range[1])
        buffer.rewind()
        val q = spec.quantization
        if (q == null) buffer.asFloatBuffer().put(values) else buffer.put(PixelConverter.quantizeAll(values, q))
        thumbnailSet = true
    }

    /** The model on one tile x tile window (row-major RGB floats in the sidecar's range). */
    fun runTile(hwc: FloatArray, height: Int, width: Int): FloatArray {
        require(height == tile && width == tile) { "window $height x $width; this session runs $tile x $tile" }
        input.rewind()
        val q = sidecar.input.quantization
        if (q == null) input.asFloatBuffer().put(hwc) else input.put(PixelConverter.quantizeAll(hwc, q))
        input.rewind()
        output.rewind()
        val inputs = mutableMapOf<String, Any>(sidecar.input.name to input)
        sidecar.thumbnail?.let {
            check(thumbnailSet) { "${sidecar.model} is image-adaptive: call usePhoto(photo) before its tiles" }
            thumbnail!!.rewind()
            inputs[it.name] = thumbnail!!
        }
        interpreter.runSignature(inputs, mapOf(sidecar.outputs[0].name to output), sidecar.signature)
        output.rewind()
        val oq = sidecar.outputs[0].quantization
        return if (oq == null) {
            FloatArray(hwc.size).also { output.asFloatBuffer().get(it) }
        } else {
            PixelConverter.dequantizeAll(ByteArray(hwc.size).also { output.get(it) }, oq)
        }
    }

    /** What the tiler calls: windows padded to this session's tile, as the host's enhance does. */
    fun tileFunction(): TileFunction = TileFunction { hwc, h, w -> runTile(hwc, h, w) }.padded(1, tile, tile)

    override fun close() {
        interpreter.close()
        gpu?.close()
    }

    private fun gpuDelegate(): GpuDelegate {
        val compatibility = CompatibilityList()
        try {
            if (!compatibility.isDelegateSupportedOnThisDevice) {
                throw UnsupportedOperationException("the GPU delegate does not support this device; choose CPU")
            }
            return GpuDelegate(compatibility.bestOptionsForThisDevice)
        } finally {
            compatibility.close()
        }
    }

    private fun mapModel(context: Context): MappedByteBuffer = try {
        context.assets.openFd(MODEL_ASSET).use { fd ->
            FileInputStream(fd.fileDescriptor).use { stream ->
                stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    } catch (e: FileNotFoundException) {
        throw SidecarException("no $MODEL_ASSET in the app's assets: run `python -m export --target tflite " +
            "--android-assets` in the repository and rebuild the app")
    }
}
