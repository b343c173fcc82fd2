/*
 * http.h - the request-head parser of rollover-hello.
 *
 * A strict, allocation-free parser of one HTTP/1.0 or HTTP/1.1 request
 * head (request line, header fields, empty line) at the start of a
 * buffer, for a server that answers from the head alone and discards any
 * body.  It keeps no state between calls: the caller passes everything
 * received so far and calls again when more arrives.  Split reads are
 * therefore harmless, and pipelined requests are parsed one after the
 * other by advancing past each head (and its body, content_length
 * bytes).  Not a general HTTP library.
 */
#ifndef ROLLOVER_HTTP_H
#define ROLLOVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_method { HTTP_OTHER, HTTP_GET, HTTP_HEAD };

struct http_request {
	enum http_method method;
	const char *target; /* the request-target, inside the buffer */
	size_t target_len;
	int minor;		 /* 0 for HTTP/1.0, 1 for HTTP/1.1 and later */
	bool keep_alive;	 /* another request may follow this one */
	uint64_t content_length; /* body bytes that follow the head */
};

/*
 * http_parse - parse the request head at the start of buf[0, len).
 *
 * Returns the length of the head, through its empty line, once it is
 * complete, and fills *rq; 0 if more bytes are needed; or a negated HTTP
 * status to answer before closing the connection:
 *
 *   -400  malformed: a request line that is not METHOD SP TARGET SP
 *         HTTP/D.D, a control character or a bare CR in a line, a
 *         header line without a colon or with white space before it, a
 *         folded header line (obs-fold), a Content-Length that is not a
 *         number of at most 18 digits, or two that differ, or
 *         Transfer-Encoding together with Content-Length;
 *   -431  no complete head within the first max bytes;
 *   -501  Transfer-Encoding (bodies are only read by Content-Length);
 *   -505  a major version other than 1.
 *
 * Lines end in CRLF or in a bare LF; empty lines before the request line
 * are skipped (their bytes count in the length returned).  A complete
 * line is checked as soon as it arrives, so most malformed heads are
 * refused before they are complete.  keep_alive follows the version and
 * the Connection header (close, keep-alive).  Host is not required: the
 * server has a single site.  rq->target points into buf.
 */
long http_parse(const char *buf, size_t len, size_t max,
		struct http_request *rq);

#endif
