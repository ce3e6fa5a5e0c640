/* test_support.h - TestSupport's C half: the calls Swift's Glibc module
 * lacks, as they need _GNU_SOURCE (sched_setaffinity, setns), which a header
 * Swift imports cannot define (it clashes with the Glibc module). */
#ifndef TANDEM_TEST_SUPPORT_H
#define TANDEM_TEST_SUPPORT_H

/* pin_thread.c */

/* Pins thread `tid` (0: the caller) to `cpu`, or lets it run on every CPU
 * when `cpu` < 0; returns 0 or -errno. */
int tandem_test_set_affinity(int tid, int cpu);

/* netns.c */

/* Moves the calling thread into the network namespace open at `fd`;
 * returns 0 or -errno. */
int tandem_test_enter_netns(int fd);

/* process.c */

/* A pidfd for process `pid` (pidfd_open(2)), which reads as ready once the
 * process has exited; returns the descriptor or -errno. */
int tandem_test_pidfd_open(int pid);

/* flood.c */

/* Sends `count` TCP SYNs to vip:dport (host order) out of `ifname` as raw
 * Ethernet frames (AF_PACKET, sendmmsg): the spoofed sources walk
 * src_base .. src_base + src_count - 1 (host order), the source ports
 * change every round. Returns the frames sent or -errno. */
long tandem_test_flood_syn(const char *ifname, const unsigned char *dst_mac,
			   const unsigned char *src_mac, unsigned int vip, unsigned short dport,
			   unsigned int src_base, unsigned int src_count, unsigned long count);

/* frames.c */

/* Sends `count` copies of the Ethernet frame `frame` (`len` bytes, to the
 * MAC in its first 6) out of `ifname` from an AF_PACKET socket, bypassing
 * the qdisc, with sendmmsg in batches. With `new_connections` each copy gets
 * the source address and port bpf/live.bpf.c's live_gen would write into
 * frame number `first` + k. Returns the frames sent or -errno. */
long tandem_test_send_frames(const char *ifname, const unsigned char *frame, unsigned int len,
			     unsigned long count, unsigned long first, int new_connections);

#endif
