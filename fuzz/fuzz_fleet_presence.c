/* fuzz_fleet_presence.c: a fleet node's presence value, as etcd returns it from any writer
 * (daemon/fleet_node.h). Read as a revision only when it is 1 to 19 decimal digits within
 * int64_t, and then equal to them; anything else is refused and leaves the output alone. */
#include "fuzz_common.h"

#include "daemon/fleet_node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t rev = -7;
    int ret = cb_fleet_node_parse_acked(data, size, &rev);
    bool digits = size > 0 && size <= 19;
    for (size_t i = 0; i < size && digits; i++)
        digits = data[i] >= '0' && data[i] <= '9';
    if (!digits) {
        FUZZ_REQUIRE(ret == CB_EINVAL && rev == -7, "a value that is no revision");
        return 0;
    }
    unsigned long long want = 0; /* 19 digits fit in 64 bits unsigned */
    for (size_t i = 0; i < size; i++)
        want = want * 10 + (unsigned long long)(data[i] - '0');
    if (want > (unsigned long long)INT64_MAX)
        FUZZ_REQUIRE(ret == CB_EINVAL && rev == -7, "beyond int64_t");
    else
        FUZZ_REQUIRE(ret == 0 && (unsigned long long)rev == want, "the revision");
    return 0;
}
