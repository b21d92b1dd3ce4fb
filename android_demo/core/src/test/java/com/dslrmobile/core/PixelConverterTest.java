package com.dslrmobile.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class PixelConverterTest {
    @Test
    public void argbRoundTripsThroughFloatsExactly() {
        int[] argb = TilingFixtureTest.pattern(9, 11);
        float[] f = PixelConverter.argbToFloat(argb, 11, 0, 0, 11, 9, 0f, 1f);
        for (int i = 0; i < argb.length; i++) {
            assertEquals(argb[i], PixelConverter.toArgb(f[3 * i], f[3 * i + 1], f[3 * i + 2], 0f, 1f));
        }
        float[] signed = PixelConverter.argbToFloat(argb, 11, 0, 0, 11, 9, -1f, 1f);  // another range
        assertEquals(argb[5], PixelConverter.toArgb(signed[15], signed[16], signed[17], -1f, 1f));
    }

    @Test
    public void windowsReadTheRightPixelsInRgbOrder() {
        int[] argb = {0xFF010203, 0xFF040506, 0xFF070809, 0xFF0A0B0C};  // 2x2
        float[] f = PixelConverter.argbToFloat(argb, 2, 1, 1, 1, 1, 0f, 1f);
        assertArrayEquals(new float[] {10 / 255f, 11 / 255f, 12 / 255f}, f, 0f);
    }

    @Test
    public void valuesOutsideTheRangeClipAndHalvesRoundToEven() {
        assertEquals(0, PixelConverter.toByte(-0.5f, 0f, 1f));
        assertEquals(255, PixelConverter.toByte(1.7f, 0f, 1f));
        assertEquals(0xFF000000, PixelConverter.toArgb(Float.NaN, -1f, 0f, 0f, 1f) & 0xFF00FF00 | 0xFF000000);
        assertEquals(2, PixelConverter.toByte(2.5f / 255f, 0f, 1f));  // numpy rounds 2.5 to 2
    }

    @Test
    public void int8QuantizationUsesScaleAndZeroPoint() {
        Sidecar.Quantization q = new Sidecar.Quantization(1 / 255f, -128, true);
        byte[] bytes = PixelConverter.quantizeAll(new float[] {0f, 1f, 2f, -1f}, q);
        assertArrayEquals(new byte[] {-128, 127, 127, -128}, bytes);  // saturated at both ends
        Sidecar.Quantization half = new Sidecar.Quantization(0.5f, 0, true);
        assertArrayEquals(new byte[] {0, 2, 2}, PixelConverter.quantizeAll(new float[] {0.25f, 0.75f, 1.25f}, half));
        float[] back = PixelConverter.dequantizeAll(bytes, q);
        assertEquals(0f, back[0], 1e-6f);
        assertEquals(1f, back[1], 1e-6f);
        Sidecar.Quantization u = new Sidecar.Quantization(1 / 255f, 0, false);
        assertEquals(1f, PixelConverter.dequantizeAll(new byte[] {(byte) 255}, u)[0], 1e-6f);
    }
}
