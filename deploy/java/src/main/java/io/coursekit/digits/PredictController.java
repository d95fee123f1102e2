package io.coursekit.digits;

import ai.djl.translate.TranslateException;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;
import org.springframework.http.MediaType;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RestController;

/**
 * The REST API: {@code POST /predict} with {@code {"inputs": [[64 numbers], ...]}} answers
 * {@code {"logits": [[10 floats], ...], "classes": [...]}}; {@code GET /health} says the model is loaded.
 * Bad input is answered 400 with {@code {"error": "..."}} ({@link ApiErrors}).
 */
@RestController
public class PredictController {

    private final DigitsModel model;

    public PredictController(DigitsModel model) {
        this.model = model;
    }

    @PostMapping(path = "/predict", consumes = MediaType.APPLICATION_JSON_VALUE,
            produces = MediaType.APPLICATION_JSON_VALUE)
    public Map<String, Object> predict(@RequestBody JsonNode body) throws TranslateException {
        DigitsPrediction prediction = model.predict(inputs(body));
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("logits", prediction.logits());
        answer.put("classes", prediction.classes());
        return answer;
    }

    @GetMapping(path = "/health", produces = MediaType.APPLICATION_JSON_VALUE)
    public Map<String, Object> health() {
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("status", "ok");
        answer.put("model", model.path().toString());
        answer.put("engine", model.engine());
        answer.put("features", model.features());
        return answer;
    }

    /**
     * The rows of {@code body.inputs} as floats; IllegalArgumentException naming the first part that is not an
     * array of arrays of numbers. Row lengths, emptiness and finiteness are checked by {@link InputValidation}.
     */
    static float[][] inputs(JsonNode body) {
        if (body == null || !body.isObject()) {
            throw new IllegalArgumentException("the body must be a JSON object {\"inputs\": [[64 numbers], ...]}");
        }
        JsonNode inputs = body.get("inputs");
        if (inputs == null || !inputs.isArray()) {
            throw new IllegalArgumentException("inputs must be a list of rows, e.g. {\"inputs\": [[64 numbers]]}; got "
                    + (inputs == null ? "no inputs field" : inputs.getNodeType().toString().toLowerCase()));
        }
        if (inputs.size() > InputValidation.MAX_ROWS) {
            throw new IllegalArgumentException("inputs has " + inputs.size() + " rows; at most "
                    + InputValidation.MAX_ROWS + " rows per request");
        }
        float[][] rows = new float[inputs.size()][];
        for (int i = 0; i < rows.length; i++) {
            JsonNode row = inputs.get(i);
            if (!row.isArray()) {
                throw new IllegalArgumentException("inputs[" + i + "] is a " + row.getNodeType().toString()
                        .toLowerCase() + "; each row must be a list of " + "numbers");
            }
            rows[i] = new float[row.size()];
            for (int j = 0; j < row.size(); j++) {
                JsonNode value = row.get(j);
                if (!value.isNumber()) {
                    throw new IllegalArgumentException("inputs[" + i + "][" + j + "] is " + value
                            + "; values must be numbers");
                }
                rows[i][j] = (float) value.doubleValue();
            }
        }
        return rows;
    }
}
