#ifndef TANDEM_TEST_SUPPORT_H
#define TANDEM_TEST_SUPPORT_H
/* Pins the calling thread to `cpu`; returns 0 or -errno. */
int tandem_test_pin_thread(int cpu);
/* Lets the calling thread run on every CPU again. */
int tandem_test_unpin_thread(void);
#endif
