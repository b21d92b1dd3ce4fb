package com.dslrmobile.core;

import java.util.Arrays;

/**
 * Latency statistics in milliseconds, defined as the host benchmark defines them (numpy's median and its
 * default, linearly interpolated percentile), so that the app's median and p90 mean what
 * {@code python -m benchmark}'s latency_ms_median and latency_ms_p90 mean.
 */
public final class LatencyStats {
    public final int runs;
    public final double medianMs, p90Ms, meanMs, minMs, maxMs;

    private LatencyStats(double[] sorted) {
        runs = sorted.length;
        medianMs = percentile(sorted, 50);
        p90Ms = percentile(sorted, 90);
        meanMs = Arrays.stream(sorted).average().orElse(Double.NaN);
        minMs = sorted[0];
        maxMs = sorted[sorted.length - 1];
    }

    public static LatencyStats of(double[] millis) {
        if (millis.length == 0) {
            throw new IllegalArgumentException("no timings: run the model at least once");
        }
        double[] sorted = millis.clone();
        Arrays.sort(sorted);
        return new LatencyStats(sorted);
    }

    public static LatencyStats ofNanos(long[] nanos) {
        return of(Arrays.stream(nanos).mapToDouble(n -> n / 1e6).toArray());
    }

    /** numpy.percentile(values, q) with linear interpolation, on sorted values. */
    static double percentile(double[] sorted, double q) {
        double rank = q / 100.0 * (sorted.length - 1);
        int lo = (int) Math.floor(rank);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    /** Megapixels per second at the median for an input of {@code height x width}. */
    public double megapixelsPerSecond(int height, int width) {
        return height * (double) width / 1e6 / (medianMs / 1000.0);
    }
}
