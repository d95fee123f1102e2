package io.coursekit.digits;

import java.util.Arrays;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Entry point of {@code target/coursekit-digits.jar}: {@code evaluate ...} runs the test-set evaluation
 * ({@link DigitsCli}); anything else starts the REST service ({@link PredictController}) with Spring Boot.
 */
@SpringBootApplication
public class DigitsApplication {

    public static void main(String[] args) {
        DigitsModel.offline();
        if (args.length > 0 && args[0].equals("evaluate")) {
            System.exit(DigitsCli.run(Arrays.copyOfRange(args, 1, args.length), System.out, System.err));
        }
        SpringApplication.run(DigitsApplication.class, args);
    }
}
