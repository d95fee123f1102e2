package io.coursekit.digits;

import ai.djl.translate.TranslateException;
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
        String detail = e.getMostSpecificCause().getMessage();
        int end = detail == null ? -1 : detail.indexOf('\n');
        return error(HttpStatus.BAD_REQUEST, "malformed JSON: "
                + (detail == null ? "the body could not be read" : end < 0 ? detail : detail.substring(0, end)));
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
