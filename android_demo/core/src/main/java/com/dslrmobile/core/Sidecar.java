package com.dslrmobile.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The I/O contract of an exported model, read from the JSON sidecar {@code python -m export} writes next to the
 * {@code .tflite} (and copies into the app's assets as {@code model.json}); the same JSON is embedded in the file's
 * metadata. The Java twin of the Python {@code artifacts.sidecar.Sidecar}, with the same field names. The app takes
 * layout, value range, tile size, halo and integer scale/zero point from here, never from constants.
 */
public final class Sidecar {
    /** The schema this reader understands; a sidecar of another version is refused. */
    public static final String SCHEMA = "dslr-mobile/sidecar";
    public static final int SCHEMA_VERSION = 2;

    /** Scale and zero point of an integer tensor: real = (q - zeroPoint) * scale. */
    public static final class Quantization {
        public final float scale;
        public final int zeroPoint;
        public final boolean signed;

        Quantization(float scale, int zeroPoint, boolean signed) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
            this.signed = signed;
        }

        public int qmin() {
            return signed ? -128 : 0;
        }

        public int qmax() {
            return signed ? 127 : 255;
        }
    }

    /** One input or output tensor. */
    public static final class TensorSpec {
        public final String name, layout, dtype;
        public final int[] shape;
        public final int[] dynamicDims;  // axes the runtime lets the app resize (H and W of a resizable model)
        public final float[] range;
        public final Quantization quantization;  // null for float tensors

        TensorSpec(String name, String layout, String dtype, int[] shape, int[] dynamicDims, float[] range,
                   Quantization quantization) {
            this.name = name;
            this.layout = layout;
            this.dtype = dtype;
            this.shape = shape;
            this.dynamicDims = dynamicDims;
            this.range = range;
            this.quantization = quantization;
        }

        public boolean isInteger() {
            return quantization != null;
        }

        public int height() {
            return "NCHW".equals(layout) ? shape[2] : shape[1];
        }

        public int width() {
            return "NCHW".equals(layout) ? shape[3] : shape[2];
        }

        public int channels() {
            return "NCHW".equals(layout) ? shape[1] : shape[3];
        }
    }

    public final String model, target, precision, signature;
    public final TensorSpec input;
    /** Image-adaptive models: the second input, the whole photo's thumbnail ({@link Thumbnail}); else null. */
    public final TensorSpec thumbnail;
    public final List<TensorSpec> outputs;
    public final int halo, sizeMultiple, tile;
    public final boolean haloExact, resizable;

    private Sidecar(String model, String target, String precision, String signature, TensorSpec input,
                    TensorSpec thumbnail, List<TensorSpec> outputs, int halo, boolean haloExact, int sizeMultiple,
                    int tile) {
        this.model = model;
        this.target = target;
        this.precision = precision;
        this.signature = signature;
        this.input = input;
        this.thumbnail = thumbnail;
        this.outputs = Collections.unmodifiableList(outputs);
        this.halo = halo;
        this.haloExact = haloExact;
        this.sizeMultiple = sizeMultiple;
        this.tile = tile;
        this.resizable = input.dynamicDims.length > 0;
    }

    public static Sidecar parse(String json) throws SidecarException {
        JsonObject root;
        try {
            JsonElement e = JsonParser.parseString(json);
            if (!e.isJsonObject()) {
                throw new SidecarException("sidecar is not a JSON object");
            }
            root = e.getAsJsonObject();
        } catch (JsonParseException err) {
            throw new SidecarException("sidecar is not valid JSON: " + err.getMessage());
        }
        checkSchema(root);
        TensorSpec input = tensor(object(root, "input", "input"), "input");
        JsonElement thumb = root.get("thumbnail");
        TensorSpec thumbnail = thumb == null || thumb.isJsonNull() ? null
                : tensor(object(root, "thumbnail", "thumbnail"), "thumbnail");
        if (thumbnail != null && (thumbnail.dynamicDims.length > 0 || thumbnail.height() != thumbnail.width())) {
            throw new SidecarException("sidecar field thumbnail must be square and of fixed size");
        }
        List<TensorSpec> outputs = new ArrayList<>();
        JsonArray arr = array(root, "outputs", "outputs");
        for (int i = 0; i < arr.size(); i++) {
            if (!arr.get(i).isJsonObject()) {
                throw new SidecarException("sidecar field outputs[" + i + "] is not an object");
            }
            outputs.add(tensor(arr.get(i).getAsJsonObject(), "outputs[" + i + "]"));
        }
        if (outputs.isEmpty()) {
            throw new SidecarException("sidecar lists no outputs");
        }
        int halo = integer(root, "halo", "halo");
        if (halo < 0) {
            throw new SidecarException("sidecar field halo is negative (" + halo + ")");
        }
        int multiple = integer(root, "size_multiple", "size_multiple");
        if (multiple < 1) {
            throw new SidecarException("sidecar field size_multiple must be >= 1, got " + multiple);
        }
        int tile = integer(root, "tile", "tile");
        if (tile <= 2 * halo) {
            throw new SidecarException("sidecar field tile (" + tile + ") must be larger than twice the halo (" + halo
                    + ")");
        }
        return new Sidecar(string(root, "model", "model"), string(root, "target", "target"),
                string(root, "precision", "precision"), string(root, "signature", "signature"), input, thumbnail, outputs, halo,
                bool(root, "halo_exact", "halo_exact"), multiple, tile);
    }

    /** Refuses JSON that is not a dslr-mobile sidecar, or one of another schema version, naming what it found. */
    private static void checkSchema(JsonObject root) throws SidecarException {
        JsonElement schema = root.get("schema");
        if (schema == null || !schema.isJsonPrimitive() || !SCHEMA.equals(schema.getAsString())) {
            throw new SidecarException(root.has("schema_version") || root.has("schema")
                    ? "not a dslr-mobile sidecar (schema " + schema + ", expected " + SCHEMA + ")"
                    : "sidecar has no schema_version: written by an older dslr-mobile; re-export the model");
        }
        JsonElement version = root.get("schema_version");
        if (version == null || !version.isJsonPrimitive() || !version.getAsJsonPrimitive().isNumber()
                || version.getAsInt() != SCHEMA_VERSION) {
            throw new SidecarException("sidecar schema_version " + version + " is not " + SCHEMA_VERSION
                    + ", the version this app reads; re-export the model with python -m export");
        }
    }

    /**
     * The tile size to run: the exported size for a fixed-size graph, else {@code requested} (the sidecar's
     * recommended {@link #tile} when 0) rounded down to the size multiple. Fails when no core would remain
     * (tile <= 2 * halo).
     */
    public int tileSize(int requested) throws SidecarException {
        int wanted = requested > 0 ? requested : this.tile;
        int tile = resizable ? wanted / sizeMultiple * sizeMultiple : Math.min(input.height(), input.width());
        if (tile <= 2 * halo) {
            throw new SidecarException("tile size " + tile + " must be larger than twice the halo (" + halo + ")"
                    + (resizable ? "; choose a larger tile" : "; re-export the model at a larger --size"));
        }
        return tile;
    }

    /** The function a model needs around it: windows padded to the exported size or the size multiple. */
    public TileFunction wrap(TileFunction model) {
        return resizable ? model.padded(sizeMultiple, 0, 0) : model.padded(1, input.height(), input.width());
    }

    private static TensorSpec tensor(JsonObject o, String where) throws SidecarException {
        String dtype = string(o, "dtype", where + ".dtype");
        String layout = string(o, "layout", where + ".layout");
        if (!layout.equals("NHWC") && !layout.equals("NCHW")) {
            throw new SidecarException("sidecar field " + where + ".layout is " + layout + "; expected NHWC or NCHW");
        }
        JsonArray shapeArr = array(o, "shape", where + ".shape");
        if (shapeArr.size() != 4) {
            throw new SidecarException("sidecar field " + where + ".shape must have 4 dimensions, got " + shapeArr.size());
        }
        int[] shape = new int[4];
        for (int i = 0; i < 4; i++) {
            shape[i] = shapeArr.get(i).getAsInt();
        }
        JsonArray dynArr = array(o, "dynamic_dims", where + ".dynamic_dims");
        int[] dynamic = new int[dynArr.size()];
        for (int i = 0; i < dynamic.length; i++) {
            dynamic[i] = dynArr.get(i).getAsInt();
            if (dynamic[i] < 0 || dynamic[i] > 3) {
                throw new SidecarException("sidecar field " + where + ".dynamic_dims holds axis " + dynamic[i]);
            }
        }
        JsonArray r = array(o, "range", where + ".range");
        if (r.size() != 2 || r.get(1).getAsFloat() <= r.get(0).getAsFloat()) {
            throw new SidecarException("sidecar field " + where + ".range must be [low, high] with low < high");
        }
        float[] range = {r.get(0).getAsFloat(), r.get(1).getAsFloat()};
        Quantization q = null;
        if (dtype.equals("int8") || dtype.equals("uint8")) {
            JsonObject qo = object(o, "quantization", where + ".quantization (an " + dtype + " tensor needs scale and zero_point)");
            float scale = qo.has("scale") ? qo.get("scale").getAsFloat() : 0f;
            if (!(scale > 0f) || !qo.has("zero_point")) {
                throw new SidecarException("sidecar field " + where + ".quantization needs scale > 0 and zero_point");
            }
            q = new Quantization(scale, qo.get("zero_point").getAsInt(), dtype.equals("int8"));
        } else if (!dtype.equals("float32")) {
            throw new SidecarException("sidecar field " + where + ".dtype is " + dtype + "; the app runs float32, int8 "
                    + "or uint8 tensors");
        }
        return new TensorSpec(string(o, "name", where + ".name"), layout, dtype, shape, dynamic, range, q);
    }

    private static JsonElement field(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) {
            throw new SidecarException("sidecar lacks the field " + where);
        }
        return e;
    }

    private static JsonObject object(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = field(o, key, where);
        if (!e.isJsonObject()) {
            throw new SidecarException("sidecar field " + where + " is not an object");
        }
        return e.getAsJsonObject();
    }

    private static JsonArray array(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = field(o, key, where);
        if (!e.isJsonArray()) {
            throw new SidecarException("sidecar field " + where + " is not a list");
        }
        return e.getAsJsonArray();
    }

    private static String string(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = field(o, key, where);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
            throw new SidecarException("sidecar field " + where + " is not a string");
        }
        return e.getAsString();
    }

    private static int integer(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = field(o, key, where);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw new SidecarException("sidecar field " + where + " is not a number");
        }
        return e.getAsInt();
    }

    private static boolean bool(JsonObject o, String key, String where) throws SidecarException {
        JsonElement e = field(o, key, where);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
            throw new SidecarException("sidecar field " + where + " is not true/false");
        }
        return e.getAsBoolean();
    }
}
