package io.coursekit.digits;

/** Checks on a batch of input rows, shared by the translator and the REST endpoint (one copy of the rules). */
public final class InputValidation {

    /** Largest batch one request may send (bounds the memory a single request can take). */
    public static final int MAX_ROWS = 4096;

    private InputValidation() {
    }

    /**
     * Throws {@link IllegalArgumentException} naming the problem unless {@code rows} holds 1 to {@link #MAX_ROWS}
     * rows of exactly {@code features} finite floats.
     */
    public static void checkRows(float[][] rows, int features) {
        if (rows == null || rows.length == 0) {
            throw new IllegalArgumentException("inputs is empty: send at least one row of " + features + " numbers");
        }
        if (rows.length > MAX_ROWS) {
            throw new IllegalArgumentException("inputs has " + rows.length + " rows; at most " + MAX_ROWS
                    + " rows per request");
        }
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] == null || rows[i].length != features) {
                int got = rows[i] == null ? 0 : rows[i].length;
                throw new IllegalArgumentException("inputs[" + i + "] has " + got + " values; each row must have "
                        + features + " numbers (an 8x8 image, pixel/16, flattened)");
            }
            for (int j = 0; j < features; j++) {
                if (!Float.isFinite(rows[i][j])) {
                    throw new IllegalArgumentException("inputs[" + i + "][" + j + "] is " + rows[i][j]
                            + "; values must be finite numbers");
                }
            }
        }
    }
}
