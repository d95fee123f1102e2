package io.coursekit.digits;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** DJL's ONNX Runtime engine against Python ONNX Runtime on the whole digits test set (the fixture). */
class ParityTest {

    static final double TOLERANCE = 1e-4;
    static Fixture fixture;
    static DigitsModel model;

    @BeforeAll
    static void load() throws Exception {
        Path dir = Fixture.directory();
        fixture = Fixture.read(dir);
        model = DigitsModel.load(Fixture.modelFile(dir), fixture.sampleShape(), 1);
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** Largest |a - b| over every logit, and asserts the rows have the same length. */
    static double maxAbsDiff(float[][] a, float[][] b) {
        assertEquals(a.length, b.length, "rows");
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            assertEquals(a[i].length, b[i].length, "logits per row");
            for (int j = 0; j < a[i].length; j++) {
                max = Math.max(max, Math.abs((double) a[i][j] - b[i][j]));
            }
        }
        return max;
    }

    @Test
    void wholeTestSetInOneBatchMatchesPythonOnnxRuntime() throws Exception {
        DigitsPrediction prediction = model.predict(fixture.inputs());
        assertArrayEquals(fixture.classes(), prediction.classes(), "top-1 class of every test image");
        double diff = maxAbsDiff(fixture.logits(), prediction.logits());
        assertTrue(diff <= TOLERANCE, "max |logit difference| " + diff + " > " + TOLERANCE);
    }

    @Test
    void everyImageAloneMatchesPythonOnnxRuntime() throws Exception {
        int n = fixture.size();
        float[][] logits = new float[n][];
        int[] classes = new int[n];
        try (Predictor<float[][], DigitsPrediction> predictor = model.newPredictor()) {
            for (int i = 0; i < n; i++) {
                DigitsPrediction one = predictor.predict(new float[][] {fixture.inputs()[i]});
                logits[i] = one.logits()[0];
                classes[i] = one.classes()[0];
            }
        }
        assertArrayEquals(fixture.classes(), classes);
        double diff = maxAbsDiff(fixture.logits(), logits);
        assertTrue(diff <= TOLERANCE, "max |logit difference| " + diff + " > " + TOLERANCE);
    }

    @Test
    void accuracyOnTheTestSetEqualsPythons() throws Exception {
        int[] classes = model.predict(fixture.inputs()).classes();
        int correct = 0;
        for (int i = 0; i < classes.length; i++) {
            correct += classes[i] == fixture.labels()[i] ? 1 : 0;
        }
        assertEquals(fixture.accuracy(), (double) correct / classes.length, 1e-12);
        assertTrue(fixture.accuracy() > 0.8, "a trained digits model is right on most images: " + fixture.accuracy());
    }

    @Test
    void badRowsAreRejectedWithAMessage() {
        IllegalArgumentException shortRow = assertThrows(IllegalArgumentException.class,
                () -> model.predict(new float[][] {new float[63]}));
        assertTrue(shortRow.getMessage().contains("inputs[0] has 63 values") && shortRow.getMessage().contains("64"),
                shortRow.getMessage());
        IllegalArgumentException empty = assertThrows(IllegalArgumentException.class,
                () -> model.predict(new float[0][]));
        assertTrue(empty.getMessage().contains("empty"), empty.getMessage());
        float[] nan = new float[64];
        nan[5] = Float.NaN;
        IllegalArgumentException notFinite = assertThrows(IllegalArgumentException.class,
                () -> model.predict(new float[][] {new float[64], nan}));
        assertTrue(notFinite.getMessage().contains("inputs[1][5]"), notFinite.getMessage());
    }

    @Test
    void percentileInterpolatesLikeNumpy() {
        double[] sorted = {1, 2, 3, 4};
        assertEquals(2.5, DigitsCli.percentile(sorted, 50), 1e-12);
        assertEquals(3.97, DigitsCli.percentile(sorted, 99), 1e-12);
        assertEquals(1.0, DigitsCli.percentile(sorted, 0), 1e-12);
    }

    @Test
    void djlRunsOffline() {
        assertEquals("true", System.getProperty(DigitsModel.OFFLINE_PROPERTY));
        assertTrue(model.engine().startsWith("OnnxRuntime"), model.engine());
    }
}
