package com.dslrmobile.core;

import java.util.List;

/**
 * Runs a {@link TileFunction} tile by tile over a packed ARGB image (Android's {@code Bitmap.getPixels} layout)
 * and stitches the owned cores, as {@code enhance.tiling.enhance_tiled} does: per window, 8-bit RGB to float,
 * the function, then the core clipped to the range and rounded back to 8 bits. Memory is the image, the result and
 * one window, whatever the photo's size.
 */
public final class TiledEnhancer {
    /** Called after each tile with (tiles done, tiles in all). */
    public interface Progress {
        void update(int done, int total);
    }

    private TiledEnhancer() {}

    public static int[] enhance(int[] argb, int width, int height, int tile, int halo, TileFunction fn,
                                float[] range, Progress progress) {
        if (argb.length != width * height) {
            throw new IllegalArgumentException("pixel array holds " + argb.length + " pixels, not " + width + "x" + height);
        }
        List<Tile> plan = TilePlan.plan(height, width, tile, halo);
        int[] out = new int[argb.length];
        int done = 0;
        for (Tile t : plan) {
            float[] window = PixelConverter.argbToFloat(argb, width, t.wx, t.wy, t.ww, t.wh, range[0], range[1]);
            float[] y = fn.apply(window, t.wh, t.ww);
            if (y.length != t.wh * t.ww * 3) {
                throw new IllegalStateException("tile function returned " + y.length + " values for a " + t.wh + "x"
                        + t.ww + " window (expected " + t.wh * t.ww * 3 + ")");
            }
            for (int r = 0; r < t.oh; r++) {
                int wyRow = t.oy - t.wy + r;
                for (int c = 0; c < t.ow; c++) {
                    int i = (wyRow * t.ww + (t.ox - t.wx + c)) * 3;
                    out[(t.oy + r) * width + t.ox + c] = PixelConverter.toArgb(y[i], y[i + 1], y[i + 2], range[0], range[1]);
                }
            }
            done++;
            if (progress != null) {
                progress.update(done, plan.size());
            }
        }
        return out;
    }

    public static int[] enhance(int[] argb, int width, int height, int tile, int halo, TileFunction fn) {
        return enhance(argb, width, height, tile, halo, fn, new float[] {0f, 1f}, null);
    }
}
