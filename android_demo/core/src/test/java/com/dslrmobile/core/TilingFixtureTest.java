package com.dslrmobile.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.util.Base64;
import java.util.List;
import org.junit.Test;

/** The same tiling on phone and host: plans and stitched outputs of tests/fixtures/tiling.json, reproduced. */
public class TilingFixtureTest {
    /** The host's test pattern (tests/test_android_core_fixture.py: pattern_image). */
    static int[] pattern(int h, int w) {
        int[] argb = new int[h * w];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int r = (y * 31 + x * 17) % 256, g = (y * 7 + x * 43 + 50) % 256, b = (y * x + 3 * y + 11) % 256;
                argb[y * w + x] = 0xFF000000 | (r << 16) | (g << 8) | b;
            }
        }
        return argb;
    }

    /** The host's window_filter: channel c = max of channel (c + 1) % 3 over 3x3, outside the window = 1.0. */
    static float[] windowFilter(float[] hwc, int h, int w) {
        float[] out = new float[h * w * 3];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                for (int c = 0; c < 3; c++) {
                    int src = (c + 1) % 3;
                    float m = Float.NEGATIVE_INFINITY;
                    for (int dy = -1; dy <= 1; dy++) {
                        for (int dx = -1; dx <= 1; dx++) {
                            int yy = y + dy, xx = x + dx;
                            float v = (yy < 0 || xx < 0 || yy >= h || xx >= w) ? 1f : hwc[(yy * w + xx) * 3 + src];
                            m = Math.max(m, v);
                        }
                    }
                    out[(y * w + x) * 3 + c] = m;
                }
            }
        }
        return out;
    }

    @Test
    public void reproducesEveryHostCase() throws Exception {
        JsonArray cases = JsonParser.parseString(Fixtures.read("tiling.json")).getAsJsonObject().getAsJsonArray("cases");
        assertTrue("fixture has cases", cases.size() >= 5);
        for (JsonElement e : cases) {
            JsonObject c = e.getAsJsonObject();
            int h = c.get("height").getAsInt(), w = c.get("width").getAsInt();
            int tile = c.get("tile").getAsInt(), halo = c.get("halo").getAsInt(), multiple = c.get("multiple").getAsInt();
            String where = h + "x" + w + " tile " + tile + " halo " + halo;

            List<Tile> plan = TilePlan.plan(h, w, tile, halo);
            JsonArray expected = c.getAsJsonArray("plan");
            assertEquals(where + ": tile count", expected.size(), plan.size());
            for (int i = 0; i < plan.size(); i++) {
                JsonArray t = expected.get(i).getAsJsonArray();
                int[] want = new int[8];
                for (int k = 0; k < 8; k++) {
                    want[k] = t.get(k).getAsInt();
                }
                assertArrayEquals(where + ": tile " + i, want, plan.get(i).toArray());
            }

            TileFunction fn = TilingFixtureTest::windowFilter;
            int[] out = TiledEnhancer.enhance(pattern(h, w), w, h, tile, halo, multiple > 1 ? fn.padded(multiple, 0, 0) : fn);
            byte[] rgb = Base64.getDecoder().decode(c.get("output_rgb_base64").getAsString());
            assertEquals(where + ": output size", h * w * 3, rgb.length);
            for (int p = 0; p < h * w; p++) {
                int want = 0xFF000000 | ((rgb[3 * p] & 0xFF) << 16) | ((rgb[3 * p + 1] & 0xFF) << 8) | (rgb[3 * p + 2] & 0xFF);
                if (want != out[p]) {
                    throw new AssertionError(where + ": pixel (" + p / w + ", " + p % w + ") is "
                            + Integer.toHexString(out[p]) + ", host wrote " + Integer.toHexString(want));
                }
            }
        }
    }
}
