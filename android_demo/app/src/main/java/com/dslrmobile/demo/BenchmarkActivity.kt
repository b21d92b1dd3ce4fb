package com.dslrmobile.demo

import android.os.Bundle
import android.os.SystemClock
import android.widget.ProgressBar
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import com.dslrmobile.core.LatencyStats
import com.dslrmobile.core.PixelConverter
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

const val BENCHMARK_RUNS = 20
const val BENCHMARK_WARMUP = 2

/**
 * Runs the model [BENCHMARK_RUNS] times (after [BENCHMARK_WARMUP] warm-up runs) on one tile of the current photo,
 * per delegate: GPU, then the CPU at 1 thread and at the chosen thread count. Columns follow the host benchmark's
 * results table (latency_ms_median, latency_ms_p90, megapixels_per_s); the time is one interpreter invocation,
 * as `python -m benchmark --adb` measures with LiteRT's benchmark_model.
 */
class BenchmarkActivity : AppCompatActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_benchmark)
        val table = findViewById<TextView>(R.id.table)
        val progress = findViewById<ProgressBar>(R.id.progress)
        val path = intent.getStringExtra(EXTRA_PHOTO) ?: return finish()
        val threads = intent.getIntExtra(EXTRA_THREADS, 4)
        val requestedTile = intent.getIntExtra(EXTRA_TILE, DEFAULT_TILE)
        val configs = listOf(Delegate.GPU to 1, Delegate.CPU to 1, Delegate.CPU to threads).distinct()

        lifecycleScope.launch {
            val lines = mutableListOf(String.format("%-12s %7s %9s %9s %9s %8s", "delegate", "threads", "tile",
                "median_ms", "p90_ms", "MP/s"))
            table.text = lines.joinToString("\n")
            val photo = withContext(Dispatchers.IO) { decodePhoto(path) }
            progress.max = configs.size * (BENCHMARK_RUNS + BENCHMARK_WARMUP)
            for ((index, config) in configs.withIndex()) {
                val (delegate, n) = config
                val row = withContext(Dispatchers.Default) {
                    try {
                        ModelSession(this@BenchmarkActivity, delegate, n, requestedTile).use { session ->
                            val t = session.tile
                            val w = minOf(t, photo.width)
                            val h = minOf(t, photo.height)
                            val window = PixelConverter.argbToFloat(photo.argbPixels(), photo.width,
                                (photo.width - w) / 2, (photo.height - h) / 2, w, h,
                                session.sidecar.input.range[0], session.sidecar.input.range[1])
                            session.usePhoto(photo.argbPixels(), photo.width, photo.height)
                            val fn = session.tileFunction()
                            val nanos = LongArray(BENCHMARK_RUNS)
                            for (i in 0 until BENCHMARK_RUNS + BENCHMARK_WARMUP) {
                                val start = SystemClock.elapsedRealtimeNanos()
                                fn.apply(window, h, w)
                                val elapsed = SystemClock.elapsedRealtimeNanos() - start
                                if (i >= BENCHMARK_WARMUP) nanos[i - BENCHMARK_WARMUP] = elapsed
                                runOnUiThread { progress.progress = index * (BENCHMARK_RUNS + BENCHMARK_WARMUP) + i + 1 }
                            }
                            val s = LatencyStats.ofNanos(nanos)
                            String.format("%-12s %7d %9s %9.1f %9.1f %8.3f", delegate.label, n, "${t}x$t",
                                s.medianMs, s.p90Ms, s.megapixelsPerSecond(t, t))
                        }
                    } catch (e: Exception) {  // e.g. no GPU delegate on this device: say so in the row
                        String.format("%-12s %7d  skipped: %s", delegate.label, n, e.message ?: e.toString())
                    }
                }
                lines.add(row)
                table.text = lines.joinToString("\n")
            }
        }
    }
}
