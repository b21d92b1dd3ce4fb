package com.dslrmobile.core;

import static org.junit.Assert.assertEquals;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import org.junit.Test;

/** The same thumbnail on phone and host: tests/fixtures/thumbnail.json (artifacts.thumbnail), reproduced. */
public class ThumbnailFixtureTest {
    @Test
    public void reproducesTheHostsThumbnails() throws Exception {
        JsonArray cases = JsonParser.parseString(Fixtures.read("thumbnail.json")).getAsJsonArray();
        for (JsonElement e : cases) {
            JsonObject c = e.getAsJsonObject();
            int h = c.get("height").getAsInt(), w = c.get("width").getAsInt(), size = c.get("size").getAsInt();
            JsonArray want = c.getAsJsonArray("thumbnail");
            float[] got = Thumbnail.of(TilingFixtureTest.pattern(h, w), w, h, size, 0f, 1f);
            assertEquals(want.size(), got.length);
            for (int k = 0; k < got.length; k++) {
                assertEquals(h + "x" + w + "@" + size + "[" + k + "]", want.get(k).getAsFloat(), got[k], 1e-6f);
            }
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void refusesAPixelArrayOfAnotherSize() {
        Thumbnail.of(new int[5], 2, 2, 4, 0f, 1f);
    }
}
