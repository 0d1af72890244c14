package dev.streamcart.connect;

import io.apicurio.registry.rest.client.exception.RestClientException;
import io.apicurio.registry.rest.v2.beans.Error;
import io.apicurio.registry.utils.converter.AvroConverter;
import io.apicurio.rest.client.error.ApicurioRestClientException;
import java.io.IOException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.errors.RetriableException;

/**
 * Apicurio's Avro converter, with a registry it cannot reach reported as a {@link
 * RetriableException}.
 *
 * <p>Apicurio's schema cache retries only rate-limited lookups: while the registry is down or
 * restarting, every record fails at once with the same error as bytes that can never decode, and
 * a sink with {@code errors.tolerance=all} dead-letters perfectly valid records. Connect retries a
 * conversion that throws {@code RetriableException} for {@code errors.retry.timeout}, so with
 * this converter an outage delays a sink instead. Only failures that name the record (bad bytes,
 * an unknown schema id) still reach the dead-letter topic.
 */
public class RetryingAvroConverter<T> extends AvroConverter<T> {

  @Override
  public SchemaAndValue toConnectData(String topic, byte[] value) {
    try {
      return super.toConnectData(topic, value);
    } catch (RuntimeException e) {
      throw classify(topic, e);
    }
  }

  @Override
  public SchemaAndValue toConnectData(String topic, Headers headers, byte[] value) {
    try {
      return super.toConnectData(topic, headers, value);
    } catch (RuntimeException e) {
      throw classify(topic, e);
    }
  }

  private static RuntimeException classify(String topic, RuntimeException e) {
    if (isOutage(e)) {
      return new RetriableException(
          "schema registry unavailable while converting a record of " + topic + ": " + e, e);
    }
    return e;
  }

  /** True when the failure says nothing about the record: the registry could not answer. */
  static boolean isOutage(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof IOException) {
        return true;
      }
      if (t instanceof RestClientException rest) {
        Error error = rest.getError();
        Integer code = error == null ? null : error.getErrorCode();
        // No status: the request never got an answer (connection refused, reset, timed out).
        // 401/403 are the sink's own credentials, not the record.
        return code == null
            || code >= 500
            || code == 408
            || code == 429
            || code == 401
            || code == 403;
      }
      if (t instanceof ApicurioRestClientException) {
        // Rate limiting and the client's own authentication failures.
        return true;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return false;
  }
}
