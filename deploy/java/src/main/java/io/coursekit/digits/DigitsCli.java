package io.coursekit.digits;

import ai.djl.inference.Predictor;
import ai.djl.translate.TranslateException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * {@code evaluate}: runs the digits test set through the INT8 model with DJL and prints accuracy and the latency
 * of one image (p50/p99 over every image of the test set, {@code --repeats} times, after {@code --warmup} calls).
 *
 * <pre>
 * java -jar target/coursekit-digits.jar evaluate [--fixture DIR] [--threads 1] [--repeats 3] [--warmup 2000]
 * </pre>
 */
public final class DigitsCli {

    private DigitsCli() {
    }

    /** Parses {@code args}, evaluates, prints to {@code out}; returns the exit status (0, 2 usage, 1 failure). */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        Path dir = Fixture.directory();
        int threads = 1;
        int repeats = 3;
        int warmup = 2000;
        try {
            for (int i = 0; i < args.length; i++) {
                String arg = args[i];
                if (arg.equals("-h") || arg.equals("--help")) {
                    out.println("usage: evaluate [--fixture DIR] [--threads N] [--repeats N] [--warmup N]\n"
                            + "  --fixture DIR  folder with model.onnx and fixture.json (default: -Dcoursekit.fixture,"
                            + " $COURSEKIT_JAVA_FIXTURE, build/fixture)\n"
                            + "  --threads N    ONNX Runtime intra-op threads (default 1)\n"
                            + "  --repeats N    timed passes over the test set (default 3)\n"
                            + "  --warmup N     untimed calls first (default 2000)\n"
                            + "example: java -jar target/coursekit-digits.jar evaluate --fixture build/fixture");
                    return 0;
                }
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(arg + " needs a value");
                }
                String value = args[++i];
                switch (arg) {
                    case "--fixture" -> dir = Path.of(value);
                    case "--threads" -> threads = positive(arg, value, 1);
                    case "--repeats" -> repeats = positive(arg, value, 1);
                    case "--warmup" -> warmup = positive(arg, value, 0);
                    default -> throw new IllegalArgumentException("unknown option " + arg
                            + "; options: --fixture, --threads, --repeats, --warmup");
                }
            }
        } catch (IllegalArgumentException e) {
            err.println("evaluate: " + e.getMessage());
            return 2;
        }
        try {
            evaluate(dir, threads, repeats, warmup, out);
            return 0;
        } catch (IOException | TranslateException e) {
            err.println("evaluate: " + e.getMessage());
            return 1;
        }
    }

    private static int positive(String name, String value, int min) {
        try {
            int parsed = Integer.parseInt(value);
            if (parsed >= min) {
                return parsed;
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new IllegalArgumentException(name + " is " + value + "; give an integer >= " + min);
    }

    static void evaluate(Path dir, int threads, int repeats, int warmup, PrintStream out)
            throws IOException, TranslateException {
        Fixture fixture = Fixture.read(dir);
        try (DigitsModel model = DigitsModel.load(Fixture.modelFile(dir), fixture.sampleShape(), threads);
             Predictor<float[][], DigitsPrediction> predictor = model.newPredictor()) {
            int n = fixture.size();
            for (int i = 0; i < warmup; i++) {
                predictor.predict(new float[][] {fixture.inputs()[i % n]});
            }
            double[] samplesMs = new double[n * repeats];
            int[] predicted = new int[n];
            double maxDiff = 0;
            for (int r = 0; r < repeats; r++) {
                for (int i = 0; i < n; i++) {
                    float[][] one = {fixture.inputs()[i]};
                    long start = System.nanoTime();
                    DigitsPrediction prediction = predictor.predict(one);
                    samplesMs[r * n + i] = (System.nanoTime() - start) / 1e6;
                    predicted[i] = prediction.classes()[0];
                    for (int j = 0; j < fixture.logits()[i].length; j++) {
                        double diff = Math.abs((double) prediction.logits()[0][j] - fixture.logits()[i][j]);
                        maxDiff = Math.max(maxDiff, diff);
                    }
                }
            }
            int correct = 0;
            int agree = 0;
            for (int i = 0; i < n; i++) {
                correct += predicted[i] == fixture.labels()[i] ? 1 : 0;
                agree += predicted[i] == fixture.classes()[i] ? 1 : 0;
            }
            Arrays.sort(samplesMs);
            out.printf(Locale.ROOT, "model: %s (%s model, DJL %s, engine %s, %d intra-op thread%s)%n",
                    model.path(), fixture.model(), ai.djl.engine.Engine.getDjlVersion(), model.engine(), threads,
                    threads == 1 ? "" : "s");
            out.printf(Locale.ROOT, "accuracy: %.6f (%d/%d)%n", (double) correct / n, correct, n);
            out.printf(Locale.ROOT, "parity with Python ONNX Runtime %s (accuracy %.6f): same top-1 %d/%d, "
                    + "max |logit difference| %.2e%n", fixture.onnxruntimeVersion(), fixture.accuracy(), agree, n,
                    maxDiff);
            out.printf(Locale.ROOT, "latency per image: p50 %.4f ms, p99 %.4f ms (%d calls of batch 1, "
                    + "after %d warm-up calls)%n", percentile(samplesMs, 50), percentile(samplesMs, 99),
                    samplesMs.length, warmup);
        }
    }

    /** The {@code q}-th percentile of sorted {@code values}, interpolated linearly (numpy's default). */
    static double percentile(double[] sorted, double q) {
        double rank = q / 100.0 * (sorted.length - 1);
        int lo = (int) Math.floor(rank);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
    }
}
