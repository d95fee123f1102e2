package io.coursekit.digits;

import ai.djl.ndarray.types.Shape;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * The one {@link DigitsModel} the service shares, loaded at start-up (a missing or broken model stops the
 * service before it accepts requests). Properties: {@code coursekit.model} (the ONNX file; default
 * {@code model.onnx} in the fixture folder), {@code coursekit.input-shape} (one image, default {@code 1,8,8}),
 * {@code coursekit.threads} (ONNX Runtime intra-op threads, default 1).
 */
@Configuration
public class ModelConfiguration {

    @Bean(destroyMethod = "close")
    public DigitsModel digitsModel(@Value("${coursekit.model:}") String model,
                                   @Value("${coursekit.input-shape:1,8,8}") String inputShape,
                                   @Value("${coursekit.threads:1}") int threads) throws IOException {
        Path path = model.isBlank() ? Fixture.modelFile(Fixture.directory()) : Path.of(model);
        long[] dims;
        try {
            dims = Arrays.stream(inputShape.split(",")).map(String::trim).mapToLong(Long::parseLong).toArray();
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("coursekit.input-shape is '" + inputShape
                    + "'; give the shape of one image as comma-separated integers, e.g. 1,8,8", e);
        }
        return DigitsModel.load(path, new Shape(dims), threads);
    }
}
