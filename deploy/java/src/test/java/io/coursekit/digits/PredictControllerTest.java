package io.coursekit.digits;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.client.TestRestTemplate;
import org.springframework.http.HttpEntity;
import org.springframework.http.HttpHeaders;
import org.springframework.http.MediaType;
import org.springframework.http.ResponseEntity;

/** The REST service over real HTTP on a random loopback port: answers, parity with Python, and bad input. */
@SpringBootTest(webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT)
class PredictControllerTest {

    static final ObjectMapper JSON = new ObjectMapper();
    static Fixture fixture;

    @Autowired
    TestRestTemplate http;

    @BeforeAll
    static void readFixture() throws Exception {
        fixture = Fixture.read(Fixture.directory());
    }

    ResponseEntity<String> post(String body, MediaType type) {
        HttpHeaders headers = new HttpHeaders();
        headers.setContentType(type);
        return http.postForEntity("/predict", new HttpEntity<>(body, headers), String.class);
    }

    JsonNode postJson(String body, int expectedStatus) throws Exception {
        ResponseEntity<String> response = post(body, MediaType.APPLICATION_JSON);
        assertEquals(expectedStatus, response.getStatusCode().value(), response.getBody());
        return JSON.readTree(response.getBody());
    }

    /** Posts a bad body and checks the 400 carries an "error" message containing {@code expected}. */
    void rejects(String body, String expected) throws Exception {
        JsonNode answer = postJson(body, 400);
        String error = answer.path("error").asText();
        assertTrue(error.contains(expected), "error '" + error + "' should mention '" + expected + "'");
    }

    @Test
    void healthSaysTheModelIsLoaded() throws Exception {
        ResponseEntity<String> response = http.getForEntity("/health", String.class);
        assertEquals(200, response.getStatusCode().value());
        JsonNode health = JSON.readTree(response.getBody());
        assertEquals("ok", health.get("status").asText());
        assertEquals(64, health.get("features").asInt());
        assertTrue(health.get("engine").asText().startsWith("OnnxRuntime"));
    }

    @Test
    void predictAnswersLikePythonOnnxRuntime() throws Exception {
        int[] rows = {0, 1, fixture.size() - 1};
        float[][] inputs = Arrays.stream(rows).mapToObj(i -> fixture.inputs()[i]).toArray(float[][]::new);
        JsonNode answer = postJson(JSON.writeValueAsString(Map.of("inputs", inputs)), 200);
        assertEquals(rows.length, answer.get("classes").size());
        for (int k = 0; k < rows.length; k++) {
            assertEquals(fixture.classes()[rows[k]], answer.get("classes").get(k).asInt());
            JsonNode logits = answer.get("logits").get(k);
            assertEquals(fixture.logits()[rows[k]].length, logits.size());
            for (int j = 0; j < logits.size(); j++) {
                assertEquals(fixture.logits()[rows[k]][j], logits.get(j).asDouble(), ParityTest.TOLERANCE);
            }
        }
    }

    @Test
    void badInputIsA400WithAMessage() throws Exception {
        rejects("{\"inputs\": [[1, 2, 3]]}", "inputs[0] has 3 values; each row must have 64 numbers");
        rejects("{\"inputs\": [" + JSON.writeValueAsString(new float[65]) + "]}", "has 65 values");
        String letters = JSON.writeValueAsString(new float[63]).replace("]", ", \"x\"]");
        rejects("{\"inputs\": [" + letters + "]}", "inputs[0][63] is \"x\"; values must be numbers");
        rejects("{\"inputs\": [[true]]}", "values must be numbers");
        rejects("{\"inputs\": [" + JSON.writeValueAsString(new float[63]).replace("]", ", 1e999]") + "]}",
                "finite");
        rejects("{\"inputs\": []}", "inputs is empty");
        rejects("{\"rows\": [[0]]}", "no inputs field");
        rejects("{\"inputs\": 7}", "inputs must be a list of rows");
        rejects("{\"inputs\": [5]}", "inputs[0] is a number");
        rejects("[1, 2]", "the body must be a JSON object");
        rejects("{\"inputs\": [[1, 2", "malformed JSON");
        rejects("", "malformed JSON: the body is empty");
        rejects("{\"inputs\": [[1, 2,, 3]]}", "malformed JSON at line 1, column");
    }

    @Test
    void aBodyThatIsNotJsonIsA415AndTheServiceKeepsServing() throws Exception {
        ResponseEntity<String> response = post("1,2,3", MediaType.TEXT_PLAIN);
        assertEquals(415, response.getStatusCode().value());
        assertTrue(JSON.readTree(response.getBody()).path("error").asText().contains("application/json"));
        assertEquals(200, http.getForEntity("/health", String.class).getStatusCode().value());
    }
}
