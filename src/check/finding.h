/*
 * The findings of `check`, and the words of each: shared by the whole check (check.c)
 * and the check of one binding (binding.c), so that `add sslcert` refuses a binding in
 * the same words as `certbind check` reports it. Internal to src/check.
 */
#ifndef CB_CHECK_FINDING_H
#define CB_CHECK_FINDING_H

#include "check/check.h"

#define CB_CHECK_LIST_MAX 20 /* bindings named in one finding; the rest are counted */

/* Appends a finding with a formatted message; NULL when out of memory. The pointer is
 * good until the next append (the array may move). */
struct cb_finding *cb_check_add(struct cb_findings *f, const char *code, enum cb_severity sev,
                                uint16_t port, const char *fmt, ...) CB_PRINTF(5, 6);
/* Names one more binding (its canonical key, copied) in x. CB_ENOMEM. */
int cb_check_add_binding(struct cb_finding *x, const char *key) CB_MUST_CHECK;

/* "a, b, c (+N more)" of a certificate's names, for messages. */
void cb_check_names_text(char **names, size_t n, char *buf, size_t size);

/* The SNI and central store bindings of a port as a finding lists them: names (or the
 * key of a ccs binding), the first CB_CHECK_LIST_MAX of them, then "(+N more)". */
struct cb_check_sni_list {
    char text[1024];
    size_t n; /* all of them, listed or not */
};
void cb_check_sni_list_add(struct cb_check_sni_list *l, const char *name);

/* The findings themselves: each appends one finding (NULL when out of memory) and names
 * no binding yet. */
struct cb_finding *cb_check_unknown_cert(struct cb_findings *f, const char *key_text,
                                         const char *certhash, uint16_t port);
/* user: the service user's name, or "" when none is set. */
struct cb_finding *cb_check_key_unusable(struct cb_findings *f, const struct cb_cert_row *row,
                                         const char *user, const char *reason);
/* dual-cert-mismatch: the two certificates of key_text (certhash=T1,T2) are not one ECDSA
 * and one RSA certificate (why, from cb_dual_pair_refused), or do not cover the same
 * names (why NULL). */
struct cb_finding *cb_check_dual_mismatch(struct cb_findings *f, const char *key_text,
                                          const struct cb_cert_info *a,
                                          const struct cb_cert_info *b, const char *why,
                                          uint16_t port);
/* The IP binding ip_key (family, addr, port) over the port's SNI bindings in sni. */
struct cb_finding *cb_check_ip_shadows_sni(struct cb_findings *f, const char *ip_key,
                                           uint8_t family, const uint8_t addr[16], uint16_t port,
                                           const struct cb_check_sni_list *sni);

#endif
