package com.dslrmobile.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.List;
import org.junit.Test;

public class TilePlanTest {
    private static void assertCoversOnce(int h, int w, List<Tile> plan) {
        int[] owned = new int[h * w];
        for (Tile t : plan) {
            assertTrue("window inside the image", t.wy >= 0 && t.wx >= 0 && t.wy + t.wh <= h && t.wx + t.ww <= w);
            assertTrue("core inside its window", t.oy >= t.wy && t.ox >= t.wx
                    && t.oy + t.oh <= t.wy + t.wh && t.ox + t.ow <= t.wx + t.ww);
            for (int y = t.oy; y < t.oy + t.oh; y++) {
                for (int x = t.ox; x < t.ox + t.ow; x++) {
                    owned[y * w + x]++;
                }
            }
        }
        for (int v : owned) {
            assertEquals(1, v);
        }
    }

    @Test
    public void oneByOneImageIsOneTile() {
        List<Tile> plan = TilePlan.plan(1, 1, 256, 32);
        assertEquals(1, plan.size());
        assertEquals("Tile(window 0,0 1x1, core 0,0 1x1)", plan.get(0).toString());
        int[] out = TiledEnhancer.enhance(new int[] {0xFF102030}, 1, 1, 256, 32, (hwc, h, w) -> hwc);
        assertEquals(0xFF102030, out[0]);
    }

    @Test
    public void imageSmallerThanOneTileRunsWhole() {
        List<Tile> plan = TilePlan.plan(100, 60, 256, 32);
        assertEquals(1, plan.size());
        assertCoversOnce(100, 60, plan);
    }

    @Test
    public void largeImagesAreCoveredExactlyOnceAndWindowsAreFullTiles() {
        List<Tile> plan = TilePlan.plan(3000, 4000, 256, 32);
        assertCoversOnce(3000, 4000, plan);
        for (Tile t : plan) {
            assertEquals(256, t.wh);
            assertEquals(256, t.ww);
        }
        assertEquals(16 * 21, plan.size());  // ceil(3000 / 192) x ceil(4000 / 192)
    }

    @Test
    public void tileMustExceedTwiceTheHalo() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TilePlan.plan(500, 500, 64, 32));
        assertTrue(e.getMessage().contains("twice the halo"));
        assertThrows(IllegalArgumentException.class, () -> TilePlan.plan(0, 10, 64, 4));
        assertThrows(IllegalArgumentException.class, () -> TilePlan.plan(10, 10, 64, -1));
    }

    @Test
    public void identityModelReturnsTheImage() {
        int[] img = TilingFixtureTest.pattern(70, 90);
        assertEquals(java.util.Arrays.toString(img),
                java.util.Arrays.toString(TiledEnhancer.enhance(img, 90, 70, 32, 5, (hwc, h, w) -> hwc)));
    }

    @Test
    public void paddedWindowsReachTheFixedSizeAndAreCroppedBack() {
        int[][] seen = new int[1][];
        TileFunction model = (hwc, h, w) -> {
            seen[0] = new int[] {h, w};
            return hwc;
        };
        int[] img = TilingFixtureTest.pattern(20, 30);
        int[] out = TiledEnhancer.enhance(img, 30, 20, 64, 8, model.padded(1, 64, 64));
        assertEquals(64, seen[0][0]);
        assertEquals(64, seen[0][1]);
        assertEquals(java.util.Arrays.toString(img), java.util.Arrays.toString(out));
        TiledEnhancer.enhance(img, 30, 20, 64, 8, model.padded(32, 0, 0));
        assertEquals(32, seen[0][0]);
        assertEquals(32, seen[0][1]);
    }
}
