package com.dslrmobile.core;

/**
 * The thumbnail an image-adaptive model takes with every tile of a photo, as {@code artifacts.thumbnail} makes it on
 * the host: a size x size grid of cell means of the whole photo, cell (i, j) averaging rows floor(i H / size) to
 * ceil((i + 1) H / size) - 1 and the same columns (PyTorch's adaptive average pooling). Made once per photo.
 */
public final class Thumbnail {
    private Thumbnail() {}

    /** Float RGB, row-major (size, size, 3), values mapped from 8 bits to [lo, hi] as the tiles are. */
    public static float[] of(int[] argb, int width, int height, int size, float lo, float hi) {
        if (argb.length != width * height || width < 1 || height < 1 || size < 1) {
            throw new IllegalArgumentException("thumbnail of a " + width + "x" + height + " image (" + argb.length
                    + " pixels) at size " + size);
        }
        // integral image in double, one row of (width + 1) x 3 sums per image row + 1
        double[] integral = new double[(height + 1) * (width + 1) * 3];
        int stride = (width + 1) * 3;
        for (int y = 0; y < height; y++) {
            double[] row = new double[3];
            for (int x = 0; x < width; x++) {
                int p = argb[y * width + x];
                row[0] += ((p >> 16) & 0xFF) / 255.0;
                row[1] += ((p >> 8) & 0xFF) / 255.0;
                row[2] += (p & 0xFF) / 255.0;
                for (int c = 0; c < 3; c++) {
                    integral[(y + 1) * stride + (x + 1) * 3 + c] = integral[y * stride + (x + 1) * 3 + c] + row[c];
                }
            }
        }
        float[] out = new float[size * size * 3];
        for (int i = 0; i < size; i++) {
            int y0 = start(i, height, size), y1 = end(i, height, size);
            for (int j = 0; j < size; j++) {
                int x0 = start(j, width, size), x1 = end(j, width, size);
                double area = (double) (y1 - y0) * (x1 - x0);
                for (int c = 0; c < 3; c++) {
                    double sum = integral[y1 * stride + x1 * 3 + c] - integral[y0 * stride + x1 * 3 + c]
                            - integral[y1 * stride + x0 * 3 + c] + integral[y0 * stride + x0 * 3 + c];
                    out[(i * size + j) * 3 + c] = (float) (lo + (hi - lo) * (sum / area));
                }
            }
        }
        return out;
    }

    static int start(int i, int length, int size) {
        return (int) ((long) i * length / size);
    }

    static int end(int i, int length, int size) {
        return (int) (((long) (i + 1) * length + size - 1) / size);
    }
}
