package io.coursekit.digits;

import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * What the Python side wrote for Java ({@code coursekit.serve.fixture.export_java_fixture}): the INT8 model
 * ({@code model.onnx}) and {@code fixture.json} with the digits test set and Python ONNX Runtime's logits.
 *
 * <p>The folder is the system property {@code coursekit.fixture}, else the environment variable
 * {@code COURSEKIT_JAVA_FIXTURE}, else {@code build/fixture} (relative to the working directory).
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Fixture(
        @JsonProperty("model") String model,
        @JsonProperty("input_shape") long[] inputShape,
        @JsonProperty("inputs") float[][] inputs,
        @JsonProperty("labels") int[] labels,
        @JsonProperty("logits") float[][] logits,
        @JsonProperty("classes") int[] classes,
        @JsonProperty("accuracy") double accuracy,
        @JsonProperty("onnxruntime_version") String onnxruntimeVersion) {

    public static final String PROPERTY = "coursekit.fixture";
    public static final String ENVIRONMENT = "COURSEKIT_JAVA_FIXTURE";
    public static final String MODEL_FILE = "model.onnx";
    public static final String FIXTURE_FILE = "fixture.json";

    /** The fixture folder named by {@code -Dcoursekit.fixture}, {@code $COURSEKIT_JAVA_FIXTURE} or the default. */
    public static Path directory() {
        String dir = System.getProperty(PROPERTY);
        if (dir == null || dir.isBlank()) {
            dir = System.getenv(ENVIRONMENT);
        }
        return Path.of(dir == null || dir.isBlank() ? "build/fixture" : dir);
    }

    /** Reads {@code fixture.json} from {@code dir}; an IOException saying how to write it when it is missing. */
    public static Fixture read(Path dir) throws IOException {
        Path file = dir.resolve(FIXTURE_FILE);
        if (!Files.isRegularFile(file) || !Files.isRegularFile(dir.resolve(MODEL_FILE))) {
            throw new IOException("no fixture in " + dir.toAbsolutePath() + " (" + FIXTURE_FILE + " and "
                    + MODEL_FILE + "): write it with .venv/bin/python -c \"from coursekit.serve.fixture import "
                    + "export_java_fixture; export_java_fixture('" + dir + "')\" and pass the folder as -D"
                    + PROPERTY + "=DIR or " + ENVIRONMENT + "=DIR");
        }
        Fixture fixture = new ObjectMapper().readValue(file.toFile(), Fixture.class);
        int n = fixture.inputs().length;
        if (n == 0 || fixture.labels().length != n || fixture.logits().length != n || fixture.classes().length != n) {
            throw new IOException(file + " is inconsistent: " + n + " inputs, " + fixture.labels().length
                    + " labels, " + fixture.logits().length + " logit rows, " + fixture.classes().length + " classes");
        }
        return fixture;
    }

    /** The model file beside {@code fixture.json}. */
    public static Path modelFile(Path dir) {
        return dir.resolve(MODEL_FILE);
    }

    /** The shape of one image as the model takes it (e.g. 1x8x8). */
    public Shape sampleShape() {
        return new Shape(inputShape);
    }

    /** Number of test images. */
    public int size() {
        return inputs.length;
    }

    @Override
    public String toString() {
        return "Fixture[" + model + ", " + inputs.length + " images of shape " + Arrays.toString(inputShape) + "]";
    }
}
