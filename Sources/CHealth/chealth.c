/* chealth.c - the target's one C file; everything is in the header. */
#include "chealth.h"
