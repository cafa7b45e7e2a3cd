#include "core/utf8.h"

#include <stdint.h>

#include "core/buf.h"

/* Table 3-7 of the Unicode standard gives the valid second bytes. */
size_t
lms_utf8_sequence(const unsigned char *s, size_t avail, size_t *bad)
{
	uint8_t c = s[0];
	size_t need;
	uint8_t lo = 0x80, hi = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		*bad = 1;
		return 0;
	}
	for (size_t i = 1; i < need; i++) {
		uint8_t b = i < avail ? s[i] : 0;
		uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
		if (i >= avail || b < l || b > h) {
			*bad = i;
			return 0;
		}
	}
	return need;
}

char *
lms_utf8_sanitize(const char *in, size_t len, size_t *out_len)
{
	static const char replacement[] = "\xEF\xBF\xBD";
	struct lms_buf out = {0};
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0, run = 0;

	while (i < len) {
		size_t bad = 0, n = lms_utf8_sequence(s + i, len - i, &bad);
		if (n > 0) {
			i += n;
			run += n;
			continue;
		}
		lms_buf_append(&out, s + i - run, run);
		lms_buf_append(&out, replacement, 3);
		run = 0;
		i += bad;
	}
	lms_buf_append(&out, s + i - run, run);
	return lms_buf_steal(&out, out_len);
}
