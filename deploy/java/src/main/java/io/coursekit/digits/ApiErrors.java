package io.coursekit.digits;

import ai.djl.translate.TranslateException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import java.util.Map;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.http.converter.HttpMessageNotReadableException;
import org.springframework.web.HttpMediaTypeNotSupportedException;
import org.springframework.web.bind.annotation.ExceptionHandler;
import org.springframework.web.bind.annotation.RestControllerAdvice;

/** Errors as JSON {@code {"error": "..."}}: 400 for bad input, 415 for a body that is not JSON, 500 otherwise. */
@RestControllerAdvice
public class ApiErrors {

    @ExceptionHandler(IllegalArgumentException.class)
    public ResponseEntity<Map<String, String>> badInput(IllegalArgumentException e) {
        return error(HttpStatus.BAD_REQUEST, e.getMessage());
    }

    @ExceptionHandler(HttpMessageNotReadableException.class)
    public ResponseEntity<Map<String, String>> malformed(HttpMessageNotReadableException e) {
        if (e.getMostSpecificCause() instanceof JsonProcessingException json) {
            String detail = json.getOriginalMessage();
            int cut = detail.indexOf(" (start marker");
            detail = (cut < 0 ? detail : detail.substring(0, cut)).lines().findFirst().orElse("");
            JsonLocation at = json.getLocation();
            String where = at == null ? "" : " at line " + at.getLineNr() + ", column " + at.getColumnNr();
            return error(HttpStatus.BAD_REQUEST, "malformed JSON" + where + ": " + detail);
        }
        return error(HttpStatus.BAD_REQUEST, "malformed JSON: the body is empty or unreadable; send "
                + "{\"inputs\": [[64 numbers], ...]}");
    }

    @ExceptionHandler(HttpMediaTypeNotSupportedException.class)
    public ResponseEntity<Map<String, String>> notJson(HttpMediaTypeNotSupportedException e) {
        return error(HttpStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as JSON (Content-Type: application/json); "
                + "got " + e.getContentType());
    }

    @ExceptionHandler(TranslateException.class)
    public ResponseEntity<Map<String, String>> failed(TranslateException e) {
        return error(HttpStatus.INTERNAL_SERVER_ERROR, "inference failed: " + e.getMessage());
    }

    private static ResponseEntity<Map<String, String>> error(HttpStatus status, String message) {
        return ResponseEntity.status(status).body(Map.of("error", message));
    }
}
