#ifndef TANDEM_CLIBBPF_SHIM_H
#define TANDEM_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#endif
