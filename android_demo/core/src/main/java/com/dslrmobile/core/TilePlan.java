package com.dslrmobile.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The tile plan of {@code enhance/tiling.py}, line for line: the image is covered by owned cores of
 * {@code tile - 2 * halo} pixels per side; each core is computed in a window of exactly {@code tile} pixels
 * (fewer only where the image itself is smaller), placed at core - halo and pushed back inside the image at the
 * borders. Tiles are in row-major order. With a halo of at least the model's receptive radius the stitched result
 * equals whole-image inference; tests/fixtures/tiling.json pins this class to the host.
 */
public final class TilePlan {
    private TilePlan() {}

    /** (window start, window length, core start, core length) along one axis. */
    static List<int[]> axis(int size, int tile, int halo) {
        if (size <= tile) {
            return Collections.singletonList(new int[] {0, size, 0, size});
        }
        int core = tile - 2 * halo;
        List<int[]> out = new ArrayList<>();
        for (int start = 0; start < size; start += core) {
            int length = Math.min(core, size - start);
            int window = Math.min(Math.max(start - halo, 0), size - tile);
            out.add(new int[] {window, tile, start, length});
        }
        return out;
    }

    public static List<Tile> plan(int height, int width, int tile, int halo) {
        if (height < 1 || width < 1) {
            throw new IllegalArgumentException("image must be at least 1x1, got " + height + "x" + width);
        }
        if (halo < 0) {
            throw new IllegalArgumentException("halo must be >= 0, got " + halo);
        }
        if (tile <= 2 * halo) {
            throw new IllegalArgumentException("tile (" + tile + ") must be larger than twice the halo (" + halo
                    + "): each tile needs a core");
        }
        List<Tile> tiles = new ArrayList<>();
        for (int[] r : axis(height, tile, halo)) {
            for (int[] c : axis(width, tile, halo)) {
                tiles.add(new Tile(r[0], c[0], r[1], c[1], r[2], c[2], r[3], c[3]));
            }
        }
        return tiles;
    }
}
