package com.dslrmobile.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.Test;

public class SidecarTest {
    private static JsonObject exported() throws Exception {
        return JsonParser.parseString(Fixtures.read("sidecar.json")).getAsJsonObject();
    }

    @Test
    public void readsWhatTheExporterWrites() throws Exception {
        Sidecar s = Sidecar.parse(Fixtures.read("sidecar.json"));
        assertEquals("dped_mobile", s.model);
        assertEquals("fp32", s.precision);
        assertEquals("enhance", s.signature);
        assertEquals("image", s.input.name);
        assertEquals("NHWC", s.input.layout);
        assertEquals(3, s.input.channels());
        assertEquals(0f, s.input.range[0], 0f);
        assertEquals(1f, s.input.range[1], 0f);
        assertNull(s.input.quantization);
        assertEquals("enhanced", s.outputs.get(0).name);
        assertTrue(s.halo > 0);
        assertTrue(s.resizable);
        assertArrayEquals(new int[] {1, 2}, s.input.dynamicDims);
        assertEquals("tflite", s.target);
        assertTrue(s.haloExact);
        assertEquals(256, s.tileSize(256));
        assertEquals(s.tile, s.tileSize(0));  // 0: the sidecar's recommended tile
        assertNull(s.thumbnail);  // the fixture's model is not image-adaptive
    }

    @Test
    public void readsTheThumbnailInputOfAnImageAdaptiveModel() throws Exception {
        JsonObject o = exported();
        JsonObject thumb = o.getAsJsonObject("input").deepCopy();
        thumb.addProperty("name", "thumbnail");
        thumb.add("shape", JsonParser.parseString("[1, 128, 128, 3]"));
        thumb.add("dynamic_dims", JsonParser.parseString("[]"));
        o.add("thumbnail", thumb);
        Sidecar s = Sidecar.parse(o.toString());
        assertEquals("thumbnail", s.thumbnail.name);
        assertEquals(128, s.thumbnail.height());
        thumb.add("dynamic_dims", JsonParser.parseString("[1, 2]"));
        SidecarException e = assertThrows(SidecarException.class, () -> Sidecar.parse(o.toString()));
        assertTrue(e.getMessage(), e.getMessage().contains("thumbnail must be square and of fixed size"));
    }

    @Test
    public void refusesAnotherSchemaVersionOrAForeignFile() throws Exception {
        JsonObject o = exported();
        o.addProperty("schema_version", 3);
        SidecarException e = assertThrows(SidecarException.class, () -> Sidecar.parse(o.toString()));
        assertTrue(e.getMessage(), e.getMessage().contains("schema_version 3 is not 2"));

        JsonObject old = exported();
        old.remove("schema");
        old.remove("schema_version");
        e = assertThrows(SidecarException.class, () -> Sidecar.parse(old.toString()));
        assertTrue(e.getMessage(), e.getMessage().contains("older dslr-mobile"));

        JsonObject foreign = exported();
        foreign.addProperty("schema", "someone-else/v1");
        e = assertThrows(SidecarException.class, () -> Sidecar.parse(foreign.toString()));
        assertTrue(e.getMessage(), e.getMessage().contains("not a dslr-mobile sidecar"));
    }

    @Test
    public void everyMissingFieldIsNamed() throws Exception {
        String[][] cases = {{"halo", "halo"}, {"signature", "signature"}, {"input", "input"}, {"tile", "tile"},
                {"size_multiple", "size_multiple"}, {"outputs", "outputs"}};
        for (String[] c : cases) {
            JsonObject o = exported();
            o.remove(c[0]);
            SidecarException e = assertThrows(SidecarException.class, () -> Sidecar.parse(o.toString()));
            assertTrue(e.getMessage(), e.getMessage().contains("lacks the field " + c[1]));
        }
        for (String key : new String[] {"shape", "layout", "dtype", "name", "dynamic_dims", "range"}) {
            JsonObject o = exported();
            o.getAsJsonObject("input").remove(key);
            SidecarException e = assertThrows(SidecarException.class, () -> Sidecar.parse(o.toString()));
            assertTrue(e.getMessage(), e.getMessage().contains("input." + key));
        }
        JsonObject noOut = exported();
        noOut.add("outputs", new com.google.gson.JsonArray());
        assertTrue(assertThrows(SidecarException.class, () -> Sidecar.parse(noOut.toString())).getMessage()
                .contains("no outputs"));
        assertThrows(SidecarException.class, () -> Sidecar.parse("not json {"));
        assertThrows(SidecarException.class, () -> Sidecar.parse("[1, 2]"));
    }

    @Test
    public void integerTensorsNeedScaleAndZeroPoint() throws Exception {
        JsonObject o = exported();
        o.getAsJsonObject("input").addProperty("dtype", "int8");
        SidecarException e = assertThrows(SidecarException.class, () -> Sidecar.parse(o.toString()));
        assertTrue(e.getMessage(), e.getMessage().contains("input.quantization"));
        JsonObject q = new JsonObject();
        q.addProperty("scale", 1 / 255f);
        q.addProperty("zero_point", -128);
        o.getAsJsonObject("input").add("quantization", q);
        Sidecar s = Sidecar.parse(o.toString());
        assertTrue(s.input.isInteger());
        assertEquals(-128, s.input.quantization.zeroPoint);
        assertEquals(-128, s.input.quantization.qmin());
    }

    @Test
    public void tileSizeFollowsTheContract() throws Exception {
        JsonObject o = exported();
        o.addProperty("size_multiple", 32);
        o.addProperty("halo", 64);
        o.addProperty("tile", 256);
        Sidecar s = Sidecar.parse(o.toString());
        assertEquals(288, s.tileSize(300));  // rounded down to the size multiple
        assertTrue(assertThrows(SidecarException.class, () -> s.tileSize(100)).getMessage().contains("twice the halo"));

        JsonObject fixed = exported();
        fixed.getAsJsonObject("input").add("dynamic_dims", new com.google.gson.JsonArray());
        Sidecar f = Sidecar.parse(fixed.toString());
        assertFalse(f.resizable);
        assertEquals(f.input.height(), f.tileSize(64));  // a fixed graph tiles at its exported size
    }
}
