/* Several application threads hammering one client while events arrive on the SDK's thread,
 * two clients in one process (two plugins), and freeing a client while its events are pending. */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define ROUNDS 200

static atomic_int callbacks;
static atomic_int wrong_thread;
static pthread_t app_threads[THREADS];
static atomic_int started;

static void on_event(void *userdata, tessera_event_kind kind, const char *json) {
  (void)kind;
  (void)json;
  atomic_int *counter = (atomic_int *)userdata;
  for (int i = 0; i < atomic_load(&started); i++) {
    if (pthread_equal(pthread_self(), app_threads[i])) atomic_fetch_add(&wrong_thread, 1);
  }
  atomic_fetch_add(counter, 1);
}

static void *worker(void *arg) {
  tessera_client *c = (tessera_client *)arg;
  for (int i = 0; i < ROUNDS; i++) {
    EXPECT_RESULT(tessera_client_check(c, "mesher"), TESSERA_OK);
    EXPECT_RESULT(tessera_client_check(c, "nope"), TESSERA_FEATURE_NOT_LICENSED);
    if (i % 20 == 0) {
      tessera_lease lease = 0;
      tessera_result r = tessera_client_checkout(c, "solver", &lease);
      EXPECT(r == TESSERA_OK || r == TESSERA_NO_SEAT);
      if (r == TESSERA_OK) EXPECT_RESULT(tessera_client_release(c, lease), TESSERA_OK);
      EXPECT_RESULT(tessera_client_check_new_versions(c), TESSERA_OK);
    }
  }
  return NULL;
}

int main(void) {
  tessera_client *first = NULL;
  tessera_client *second = NULL;
  atomic_int second_events = 0;

  EXPECT_RESULT(tessera_client_new("foocad", "plugin-a", "1.0", &first), TESSERA_OK);
  EXPECT_RESULT(tessera_client_new("foocad", "plugin-b", "1.0", &second), TESSERA_OK);
  EXPECT_RESULT(tessera_client_set_event_callback(first, on_event, &callbacks, NULL), TESSERA_OK);
  EXPECT_RESULT(tessera_client_set_event_callback(second, on_event, &second_events, NULL), TESSERA_OK);
  EXPECT_RESULT(tessera_client_connect(first, 5000), TESSERA_OK);
  EXPECT_RESULT(tessera_client_connect(second, 5000), TESSERA_OK);

  for (int i = 0; i < THREADS; i++) {
    EXPECT(pthread_create(&app_threads[i], NULL, worker, first) == 0);
    atomic_fetch_add(&started, 1);
  }
  /* The second plugin works on its own meanwhile. */
  EXPECT_RESULT(tessera_client_check_new_versions(second), TESSERA_OK);
  for (int i = 0; i < THREADS; i++) EXPECT(pthread_join(app_threads[i], NULL) == 0);

  WAIT_UNTIL(atomic_load(&callbacks) == THREADS * (ROUNDS / 20));
  WAIT_UNTIL(atomic_load(&second_events) == 1);
  EXPECT(atomic_load(&wrong_thread) == 0);

  /* Free while events are still on their way. */
  for (int i = 0; i < 10; i++) EXPECT_RESULT(tessera_client_check_new_versions(first), TESSERA_OK);
  EXPECT_RESULT(tessera_client_free(first), TESSERA_OK);
  EXPECT_RESULT(tessera_client_check(second, "solver"), TESSERA_OK);
  EXPECT_RESULT(tessera_client_free(second), TESSERA_OK);
  printf("threads: all expectations hold\n");
  return 0;
}
