/*
 * base62: byte strings as base62 numbers, for API keys.
 *
 * The input bytes are one big-endian unsigned number written in base 62
 * with the alphabet "0-9A-Za-z" (0 = '0', 10 = 'A', 36 = 'a'), the same
 * digit order as GMP's mpz_get_str(base 62). Output has a fixed width,
 * left-padded with '0', so that every value of n bytes has the same
 * length: hv_base62_width(n) digits (32 bytes -> 43 digits).
 *
 * The arithmetic runs on fixed-size stack buffers that are wiped before
 * return, because the bytes are often key material. The loops run over
 * every byte and digit position whatever the values (no early exit on a
 * bad digit or an overflow); what remains value-dependent is the look-up
 * in the 62-byte alphabet, the character-class branches of decoding and
 * the CPU's division by 62: small enough for API keys, not meant as a
 * constant-time primitive.
 *
 * Thread-safety: every function is thread-safe; no state.
 */
#ifndef HV_BASE62_H
#define HV_BASE62_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest byte string the codec handles. */
#define HV_BASE62_MAX_BYTES 64
/* hv_base62_width(HV_BASE62_MAX_BYTES) */
#define HV_BASE62_MAX_DIGITS 86

/*
 * The number of base62 digits needed for any n-byte value:
 * ceil(8n / log2(62)). 0 for n = 0; 0 as well when n > HV_BASE62_MAX_BYTES.
 */
size_t hv_base62_width(size_t n);

/*
 * Encode in[0..n) as exactly `width` digits followed by a NUL, so out
 * must hold width + 1 bytes. Returns false (out set to "" when width+1 >
 * 0) when n > HV_BASE62_MAX_BYTES, width > HV_BASE62_MAX_DIGITS, or the
 * value does not fit in width digits. width = hv_base62_width(n) always
 * fits.
 */
bool hv_base62_encode(const uint8_t *in, size_t n, char *out, size_t width)
    __attribute__((warn_unused_result, nonnull(3)));

/*
 * Decode exactly len digits at s (no NUL needed) into out[0..n) as a
 * big-endian number, left-padded with zero bytes. Returns false (out
 * wiped) on a character outside the alphabet, a value >= 256^n, len >
 * HV_BASE62_MAX_DIGITS or n > HV_BASE62_MAX_BYTES.
 */
bool hv_base62_decode(const char *s, size_t len, uint8_t *out, size_t n)
    __attribute__((warn_unused_result, nonnull(3)));

/* True when c is one of the 62 digits. */
bool hv_base62_is_digit(char c);

#endif
