package io.coursekit.digits;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.translate.NoBatchifyTranslator;
import ai.djl.translate.TranslatorContext;

/**
 * DJL's pre- and post-processing for the digits model: rows of 64 floats (an 8x8 image, pixel/16, flattened
 * row by row) in, logits and classes out.
 *
 * <p>{@link #processInput} packs the whole batch into one tensor of shape {@code [n, *sampleShape]} (the
 * ONNX input, e.g. {@code [n, 1, 8, 8]} for LeNet); {@link #processOutput} reads the {@code [n, 10]} output
 * back. The batch is built here rather than by a DJL {@code Batchifier} because the ONNX Runtime engine on its
 * own implements no tensor operators (no {@code stack}): it only creates tensors and runs the graph.
 */
public final class DigitsTranslator implements NoBatchifyTranslator<float[][], DigitsPrediction> {

    private final Shape sampleShape;
    private final int features;

    /** {@code sampleShape}: the shape of one image as the model takes it, e.g. {@code new Shape(1, 8, 8)}. */
    public DigitsTranslator(Shape sampleShape) {
        this.sampleShape = sampleShape;
        this.features = Math.toIntExact(sampleShape.size());
    }

    /** Number of floats in one input row (64 for the 8x8 digits). */
    public int features() {
        return features;
    }

    @Override
    public NDList processInput(TranslatorContext ctx, float[][] rows) {
        InputValidation.checkRows(rows, features);
        float[] flat = new float[rows.length * features];
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(rows[i], 0, flat, i * features, features);
        }
        long[] dims = new long[sampleShape.dimension() + 1];
        dims[0] = rows.length;
        System.arraycopy(sampleShape.getShape(), 0, dims, 1, sampleShape.dimension());
        NDArray batch = ctx.getNDManager().create(flat, new Shape(dims));
        return new NDList(batch);
    }

    @Override
    public DigitsPrediction processOutput(TranslatorContext ctx, NDList list) {
        NDArray output = list.singletonOrThrow();
        long[] shape = output.getShape().getShape();
        if (shape.length != 2) {
            throw new IllegalStateException("the model's output has shape " + output.getShape()
                    + "; expected [batch, classes]");
        }
        int n = Math.toIntExact(shape[0]);
        int classes = Math.toIntExact(shape[1]);
        float[] flat = output.toFloatArray();
        float[][] logits = new float[n][classes];
        int[] predicted = new int[n];
        for (int i = 0; i < n; i++) {
            System.arraycopy(flat, i * classes, logits[i], 0, classes);
            predicted[i] = DigitsPrediction.argmax(logits[i]);
        }
        return new DigitsPrediction(logits, predicted);
    }
}
