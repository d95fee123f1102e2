package io.coursekit.digits;

/**
 * The model's answer for a batch of images: one row of logits (one score per digit class, before softmax) and
 * the predicted class (the arg max of that row) for every input row.
 */
public record DigitsPrediction(float[][] logits, int[] classes) {

    /** Index of the largest value of {@code row}; the first one on ties (as numpy's argmax). */
    static int argmax(float[] row) {
        int best = 0;
        for (int i = 1; i < row.length; i++) {
            if (row[i] > row[best]) {
                best = i;
            }
        }
        return best;
    }
}
