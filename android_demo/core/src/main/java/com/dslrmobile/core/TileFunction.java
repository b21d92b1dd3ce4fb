package com.dslrmobile.core;

/** A model (or any filter) applied to one window: float RGB, row-major (h, w, 3), values in the model's range. */
@FunctionalInterface
public interface TileFunction {
    float[] apply(float[] hwc, int height, int width);

    /**
     * This function for windows of any size, as {@code enhance.tiling.padded} on the host: each window is
     * edge-padded at the bottom and right to {@code fixedHeight x fixedWidth} (a model exported at a fixed size;
     * 0 for none) or up to multiples of {@code multiple}, and the output cropped back.
     */
    default TileFunction padded(int multiple, int fixedHeight, int fixedWidth) {
        if (multiple < 1) {
            throw new IllegalArgumentException("size multiple must be >= 1, got " + multiple);
        }
        TileFunction inner = this;
        return (hwc, h, w) -> {
            int th = fixedHeight > 0 ? fixedHeight : (h + multiple - 1) / multiple * multiple;
            int tw = fixedWidth > 0 ? fixedWidth : (w + multiple - 1) / multiple * multiple;
            if (th == h && tw == w) {
                return inner.apply(hwc, h, w);
            }
            if (th < h || tw < w) {
                throw new IllegalArgumentException("window " + h + "x" + w + " is larger than the model's fixed size "
                        + th + "x" + tw);
            }
            float[] big = new float[th * tw * 3];
            for (int y = 0; y < th; y++) {
                int sy = Math.min(y, h - 1);
                for (int x = 0; x < tw; x++) {
                    System.arraycopy(hwc, (sy * w + Math.min(x, w - 1)) * 3, big, (y * tw + x) * 3, 3);
                }
            }
            float[] out = inner.apply(big, th, tw);
            float[] crop = new float[h * w * 3];
            for (int y = 0; y < h; y++) {
                System.arraycopy(out, y * tw * 3, crop, y * w * 3, w * 3);
            }
            return crop;
        };
    }
}
