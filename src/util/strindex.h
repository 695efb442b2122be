/*
 * An index from strings to the positions of the caller's elements, which hold the
 * strings: open addressing with linear probing, at most half full, one uint32_t a slot.
 * The caller owns the elements and tells the index how to read an element's string (a
 * callback with a context that must stay valid, e.g. the struct that holds the array).
 * Elements are only added; a string may be there several times (each position once):
 * cb_strindex_next walks them all. Not thread-safe: one owner.
 */
#ifndef CB_UTIL_STRINDEX_H
#define CB_UTIL_STRINDEX_H

#include <certbind/certbind.h>

#include <stddef.h>
#include <stdint.h>

/* Element i's string (never NULL while i is indexed). */
typedef const char *(*cb_strindex_key_fn)(const void *ctx, uint32_t i);

struct cb_strindex {
    uint32_t *slot; /* position + 1, 0: empty */
    size_t mask;    /* slots - 1; 0 while slot is NULL */
    size_t used;
    cb_strindex_key_fn key;
    const void *ctx; /* borrowed */
};

/* 64-bit FNV-1a of s, folded: the hash of every index here. */
uint64_t cb_strindex_hash(const char *s);

/* An empty index over key(ctx, i), with room for n strings before it grows (its slots
 * are owned: cb_strindex_free). CB_ENOMEM. */
int cb_strindex_init(struct cb_strindex *ix, size_t n, cb_strindex_key_fn key,
                     const void *ctx) CB_MUST_CHECK;
void cb_strindex_free(struct cb_strindex *ix);
/* Indexes element i under its string; grows (doubling) as needed. CB_ENOMEM, and the
 * index is unchanged. */
int cb_strindex_add(struct cb_strindex *ix, uint32_t i) CB_MUST_CHECK;
/* Indexes element i under its string unless an element is there under it already: *found
 * is that element then, and i is not added; else *found is i. CB_ENOMEM (unchanged). */
int cb_strindex_add_unique(struct cb_strindex *ix, uint32_t i, uint32_t *found) CB_MUST_CHECK;
/* The first element indexed under s, or UINT32_MAX. */
uint32_t cb_strindex_find(const struct cb_strindex *ix, const char *s);
/* The elements indexed under s, one per call: *cursor starts at 0; UINT32_MAX once
 * there are no more. */
uint32_t cb_strindex_next(const struct cb_strindex *ix, const char *s, size_t *cursor);

#endif
