package com.dslrmobile.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** The host-written fixtures in the repository's tests/fixtures (path from -Ddslr.fixtures). */
final class Fixtures {
    private Fixtures() {}

    static String read(String name) throws IOException {
        Path dir = Paths.get(System.getProperty("dslr.fixtures", "../../tests/fixtures"));
        Path file = dir.resolve(name);
        if (!Files.isRegularFile(file)) {
            throw new IOException(file.toAbsolutePath() + " not found: run the Python tests (they write it) or set "
                    + "-Ddslr.fixtures to the repository's tests/fixtures");
        }
        return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
    }
}
