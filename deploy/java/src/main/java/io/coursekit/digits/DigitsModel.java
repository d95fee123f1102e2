package io.coursekit.digits;

import ai.djl.MalformedModelException;
import ai.djl.inference.Predictor;
import ai.djl.ndarray.types.Shape;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ModelNotFoundException;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.TranslateException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The exported INT8 ONNX digits model loaded with DJL's ONNX Runtime engine.
 *
 * <p>{@link #load} builds a DJL {@link Criteria}: input and output types, the model file, the engine
 * ({@code "OnnxRuntime"}), the {@link DigitsTranslator}, and ONNX Runtime session options (intra-op threads;
 * one inter-op thread; all graph optimisations, as {@code coursekit.export.ort_session} in Python). DJL is put
 * in offline mode first ({@code ai.djl.offline=true}): its engine start-up otherwise probes the EC2 metadata
 * address and may send a telemetry request. The ONNX Runtime jar bundles its native library, so nothing is
 * downloaded.
 */
public final class DigitsModel implements AutoCloseable {

    /** The system property (and DJL's switch) that keeps DJL off the network. */
    public static final String OFFLINE_PROPERTY = "ai.djl.offline";

    private final ZooModel<float[][], DigitsPrediction> model;
    private final DigitsTranslator translator;
    private final Path path;

    private DigitsModel(ZooModel<float[][], DigitsPrediction> model, DigitsTranslator translator, Path path) {
        this.model = model;
        this.translator = translator;
        this.path = path;
    }

    /** Sets {@code ai.djl.offline=true} unless the user chose a value; call before any DJL engine starts. */
    public static void offline() {
        if (System.getProperty(OFFLINE_PROPERTY) == null) {
            System.setProperty(OFFLINE_PROPERTY, "true");
        }
    }

    /**
     * Loads {@code modelFile} (an ONNX file) for images of shape {@code sampleShape} (e.g. 1x8x8), with
     * {@code threads} intra-op threads.
     */
    public static DigitsModel load(Path modelFile, Shape sampleShape, int threads) throws IOException {
        if (threads < 1) {
            throw new IllegalArgumentException("threads is " + threads + "; it must be at least 1");
        }
        if (!Files.isRegularFile(modelFile)) {
            throw new IOException("model file " + modelFile + " does not exist; write it with "
                    + "coursekit.serve.fixture.export_java_fixture (see deploy/java/README.md)");
        }
        offline();
        DigitsTranslator translator = new DigitsTranslator(sampleShape);
        Criteria<float[][], DigitsPrediction> criteria = Criteria.builder()
                .setTypes(float[][].class, DigitsPrediction.class)
                .optModelPath(modelFile)
                .optEngine("OnnxRuntime")
                .optTranslator(translator)
                .optOption("intraOpNumThreads", Integer.toString(threads))
                .optOption("interOpNumThreads", "1")
                .optOption("optLevel", "ALL_OPT")
                .build();
        try {
            return new DigitsModel(criteria.loadModel(), translator, modelFile);
        } catch (ModelNotFoundException | MalformedModelException e) {
            throw new IOException("cannot load " + modelFile + " with DJL's OnnxRuntime engine: " + e.getMessage(), e);
        }
    }

    /** A new predictor; DJL predictors are not thread-safe, so each thread (or request) takes its own. */
    public Predictor<float[][], DigitsPrediction> newPredictor() {
        return model.newPredictor();
    }

    /** Logits and classes for {@code rows} (each 64 floats), with a predictor used for this call only. */
    public DigitsPrediction predict(float[][] rows) throws TranslateException {
        InputValidation.checkRows(rows, translator.features());
        try (Predictor<float[][], DigitsPrediction> predictor = newPredictor()) {
            return predictor.predict(rows);
        }
    }

    /** Floats per input row (64). */
    public int features() {
        return translator.features();
    }

    /** The model file. */
    public Path path() {
        return path;
    }

    /** The engine's name and version, e.g. {@code OnnxRuntime 1.21.1}. */
    public String engine() {
        var engine = model.getNDManager().getEngine();
        return engine.getEngineName() + " " + engine.getVersion();
    }

    @Override
    public void close() {
        model.close();
    }
}
