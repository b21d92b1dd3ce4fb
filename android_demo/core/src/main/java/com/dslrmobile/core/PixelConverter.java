package com.dslrmobile.core;

/**
 * Conversions between Android's packed ARGB pixels ({@code 0xAARRGGBB}) and model tensors in row-major
 * (h, w, 3) RGB: float in the sidecar's value range, or integer with the sidecar's scale and zero point.
 * Rounding is half-to-even ({@link Math#rint}), as numpy's, so the phone and the host agree to the bit.
 */
public final class PixelConverter {
    private PixelConverter() {}

    /** Pixels of the window (x0, y0, w, h) of an image {@code stride} pixels wide, as floats in [lo, hi]. */
    public static float[] argbToFloat(int[] argb, int stride, int x0, int y0, int w, int h, float lo, float hi) {
        float[] out = new float[w * h * 3];
        float span = hi - lo;
        int i = 0;
        for (int y = 0; y < h; y++) {
            int row = (y0 + y) * stride + x0;
            for (int x = 0; x < w; x++) {
                int p = argb[row + x];
                out[i++] = lo + ((p >> 16) & 0xFF) / 255f * span;
                out[i++] = lo + ((p >> 8) & 0xFF) / 255f * span;
                out[i++] = lo + (p & 0xFF) / 255f * span;
            }
        }
        return out;
    }

    /** One 8-bit channel from a model value in [lo, hi]: clipped, scaled to 0..255, rounded half to even. */
    public static int toByte(float v, float lo, float hi) {
        float t = (v - lo) / (hi - lo);
        t = t < 0f ? 0f : (t > 1f ? 1f : t);
        return (int) Math.rint(t * 255f);
    }

    /** An opaque ARGB pixel from three model values in [lo, hi]. */
    public static int toArgb(float r, float g, float b, float lo, float hi) {
        return 0xFF000000 | (toByte(r, lo, hi) << 16) | (toByte(g, lo, hi) << 8) | toByte(b, lo, hi);
    }

    /** Real value -> integer tensor value: round(v / scale) + zeroPoint, saturated to [qmin, qmax]. */
    public static int quantize(float v, float scale, int zeroPoint, int qmin, int qmax) {
        long q = (long) Math.rint(v / scale) + zeroPoint;
        return (int) Math.max(qmin, Math.min(qmax, q));
    }

    /** Integer tensor value -> real value: (q - zeroPoint) * scale. */
    public static float dequantize(int q, float scale, int zeroPoint) {
        return (q - zeroPoint) * scale;
    }

    /** Floats (from {@link #argbToFloat}) -> the bytes of an int8 or uint8 input tensor. */
    public static byte[] quantizeAll(float[] values, Sidecar.Quantization q) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (byte) quantize(values[i], q.scale, q.zeroPoint, q.qmin(), q.qmax());
        }
        return out;
    }

    /** The bytes of an int8 or uint8 output tensor -> floats. */
    public static float[] dequantizeAll(byte[] values, Sidecar.Quantization q) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            int raw = q.signed ? values[i] : (values[i] & 0xFF);
            out[i] = dequantize(raw, q.scale, q.zeroPoint);
        }
        return out;
    }
}
