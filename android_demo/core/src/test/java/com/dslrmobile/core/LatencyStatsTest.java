package com.dslrmobile.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import org.junit.Test;

public class LatencyStatsTest {
    @Test
    public void matchesNumpysMedianAndLinearPercentile() {
        // numpy: median([5, 1, 4, 2, 3, 10]) = 3.5; percentile(..., 90) = 7.5
        LatencyStats s = LatencyStats.of(new double[] {5, 1, 4, 2, 3, 10});
        assertEquals(3.5, s.medianMs, 1e-12);
        assertEquals(7.5, s.p90Ms, 1e-12);
        assertEquals(25.0 / 6, s.meanMs, 1e-12);
        assertEquals(1, s.minMs, 0);
        assertEquals(10, s.maxMs, 0);
        assertEquals(6, s.runs);
    }

    @Test
    public void oneRunAndNanoseconds() {
        LatencyStats s = LatencyStats.ofNanos(new long[] {2_500_000L});
        assertEquals(2.5, s.medianMs, 1e-12);
        assertEquals(2.5, s.p90Ms, 1e-12);
        assertEquals(512 * 512 / 1e6 / 0.0025, s.megapixelsPerSecond(512, 512), 1e-9);
        assertThrows(IllegalArgumentException.class, () -> LatencyStats.of(new double[0]));
    }
}
