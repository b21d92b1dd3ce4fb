package com.dslrmobile.core;

/**
 * One tile of a {@link TilePlan}: the window the model runs on and the core of it that the tile owns in the
 * stitched result, both in image coordinates. Mirrors {@code enhance.tiling.Tile} on the host.
 */
public final class Tile {
    public final int wy, wx, wh, ww;  // window: top, left, height, width
    public final int oy, ox, oh, ow;  // owned core: top, left, height, width

    public Tile(int wy, int wx, int wh, int ww, int oy, int ox, int oh, int ow) {
        this.wy = wy; this.wx = wx; this.wh = wh; this.ww = ww;
        this.oy = oy; this.ox = ox; this.oh = oh; this.ow = ow;
    }

    /** The eight numbers in the host fixture's order: wy, wx, wh, ww, oy, ox, oh, ow. */
    public int[] toArray() {
        return new int[] {wy, wx, wh, ww, oy, ox, oh, ow};
    }

    @Override
    public String toString() {
        return "Tile(window " + wy + "," + wx + " " + wh + "x" + ww + ", core " + oy + "," + ox + " " + oh + "x" + ow + ")";
    }
}
