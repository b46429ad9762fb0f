/*
 * base62: fixed-width big-number base62 codec for API keys.
 *
 * Encoding is schoolbook long division of the big-endian byte string by
 * 62, one digit per pass, over a copy in a stack buffer; decoding is
 * multiply-and-add into a byte buffer. Both loop over every byte and every
 * digit position regardless of the values, and wipe their buffers, since
 * the inputs are usually key material.
 */
#include "base62.h"

#include <string.h>

#include "mem.h"

static const char alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

size_t
hv_base62_width(size_t n)
{
	/*
	 * ceil(8n / log2 62) computed exactly: the smallest w with
	 * 62^w >= 256^n. log2(62) = 5.954196...; 8n * 1000000 / 5954196
	 * rounded up is exact for n <= HV_BASE62_MAX_BYTES (checked by the
	 * unit test against an exact big-number comparison).
	 */
	if (n == 0 || n > HV_BASE62_MAX_BYTES)
		return 0;
	return (8 * n * 1000000 + 5954196 - 1) / 5954196;
}

/* Value of a digit, or -1. Branches on the character class only. */
static int
digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 36;
	return -1;
}

bool
hv_base62_is_digit(char c)
{
	return digit_value(c) >= 0;
}

bool
hv_base62_encode(const uint8_t *in, size_t n, char *out, size_t width)
{
	uint8_t num[HV_BASE62_MAX_BYTES];
	unsigned int acc, nonzero = 0;
	size_t i, d;
	bool ok = false;

	if (n > HV_BASE62_MAX_BYTES || width > HV_BASE62_MAX_DIGITS ||
	    (n > 0 && in == NULL))
		goto out;
	if (n > 0)
		memcpy(num, in, n);
	/* Digits come out least significant first: fill from the right. */
	for (d = width; d > 0; d--) {
		unsigned int rem = 0;

		for (i = 0; i < n; i++) {
			acc = (rem << 8) | num[i];
			num[i] = (uint8_t)(acc / 62);
			rem = acc % 62;
		}
		out[d - 1] = alphabet[rem];
	}
	for (i = 0; i < n; i++)
		nonzero |= num[i];
	out[width] = '\0';
	ok = nonzero == 0; /* else the value needs more than width digits */
out:
	hv_mem_zero(num, sizeof(num));
	if (!ok) {
		hv_mem_zero(out, width);
		out[0] = '\0';
	}
	return ok;
}

bool
hv_base62_decode(const char *s, size_t len, uint8_t *out, size_t n)
{
	uint8_t num[HV_BASE62_MAX_BYTES];
	unsigned int carry, overflow = 0, bad = 0;
	size_t i, d;
	bool ok = false;

	if (n > HV_BASE62_MAX_BYTES || len > HV_BASE62_MAX_DIGITS ||
	    (len > 0 && s == NULL))
		goto out;
	memset(num, 0, sizeof(num));
	for (d = 0; d < len; d++) {
		int v = digit_value(s[d]);

		bad |= v < 0;
		carry = v < 0 ? 0 : (unsigned int)v;
		for (i = n; i > 0; i--) {
			carry += (unsigned int)num[i - 1] * 62;
			num[i - 1] = (uint8_t)(carry & 0xff);
			carry >>= 8;
		}
		overflow |= carry;
	}
	if (bad == 0 && overflow == 0) {
		if (n > 0)
			memcpy(out, num, n);
		ok = true;
	}
out:
	hv_mem_zero(num, sizeof(num));
	if (!ok)
		hv_mem_zero(out, n);
	return ok;
}
