/* The ABI is header-only; this file makes TandemABI a buildable C target. */
#include "tandem_abi.h"

_Static_assert(sizeof(struct tandem_service) == 72, "tandem_service layout");
_Static_assert(__builtin_offsetof(struct tandem_service, hash_seed) == 48, "tandem_service layout");
_Static_assert(sizeof(struct tandem_real) == 32, "tandem_real layout");
_Static_assert(sizeof(struct tandem_flow_key) == 40, "tandem_flow_key layout");
_Static_assert(sizeof(struct tandem_persist_key) == 24, "tandem_persist_key layout");
_Static_assert(sizeof(struct tandem_persist) == 32, "tandem_persist layout");
_Static_assert(__builtin_offsetof(struct tandem_persist, written_ns) == 24,
	       "tandem_persist layout");
_Static_assert(sizeof(struct tandem_node) == 8, "tandem_node layout");
