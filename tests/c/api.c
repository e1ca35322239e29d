/* Every libtessera call, every NULL argument, calls in the wrong order, the string-out rules,
 * events through the pull API and the callback, and the refusals inside a callback. */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define PRODUCT "foocad"

static void test_null_arguments(void) {
  tessera_client *c = NULL;
  char buf[64];
  size_t written = 0;
  tessera_lease lease = 0;
  tessera_state state;
  tessera_event_kind kind = 0;

  EXPECT_RESULT(tessera_client_new(NULL, "app", "1", &c), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_new(PRODUCT, NULL, "1", &c), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_new(PRODUCT, "app", NULL, &c), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_new(PRODUCT, "app", "1", NULL), TESSERA_NULL_PARAMETER);
  EXPECT(c == NULL); /* outputs are written only on success */
  EXPECT_RESULT(tessera_client_new("", "app", "1", &c), TESSERA_INVALID_PARAMETER);
  EXPECT_RESULT(tessera_client_new("\xff\xfe", "app", "1", &c), TESSERA_INVALID_PARAMETER);
  EXPECT(c == NULL);

  /* A NULL client everywhere. */
  EXPECT_RESULT(tessera_client_connect(NULL, 0), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_check(NULL, "solver"), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_checkout(NULL, "solver", &lease), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_release(NULL, 1), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_state(NULL, &state), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_state_json(NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_request_license(NULL, TESSERA_LICENSE_STRING, NULL, NULL),
                TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_import_license_file(NULL, "/x"), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_import_license_string(NULL, "x"), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_verify_notify(NULL, true, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_trial_expired(NULL, TESSERA_LICENSE_FILE, NULL, NULL),
                TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_check_new_versions(NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_upgrade_notify(NULL, true), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_activate_code(NULL, "PL1"), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_last_error(NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_set_event_callback(NULL, NULL, NULL, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_set_log_callback(NULL, NULL, NULL, NULL, TESSERA_LOG_OFF),
                TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_next_event(NULL, &kind, buf, sizeof buf, &written),
                TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_free(NULL), TESSERA_OK);

  /* NULL arguments on a live client. */
  EXPECT_RESULT(tessera_client_new(PRODUCT, "api-test", "1.0", &c), TESSERA_OK);
  EXPECT(c != NULL);
  EXPECT_RESULT(tessera_client_check(c, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_checkout(c, NULL, &lease), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_checkout(c, "solver", NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_state(c, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_state_json(c, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_state_json(c, NULL, 10, &written), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_import_license_file(c, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_import_license_string(c, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_activate_code(c, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_next_event(c, NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_next_event(c, &kind, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_next_event(c, &kind, NULL, 8, &written), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_result_message(TESSERA_OK, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
  EXPECT_RESULT(tessera_client_free(c), TESSERA_OK);
}

static void test_results_and_version(void) {
  char buf[128];
  size_t written = 0;
  EXPECT(strcmp(tessera_version(), TESSERA_VERSION_STRING) == 0);
  EXPECT(TESSERA_VERSION_NUMBER == ((TESSERA_VERSION_MAJOR << 16) | (TESSERA_VERSION_MINOR << 8) |
                                    TESSERA_VERSION_PATCH));
  EXPECT_RESULT(tessera_result_message(TESSERA_OK, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strcmp(buf, "success") == 0 && written == 7);
  EXPECT_RESULT(tessera_result_message(TESSERA_AGENT_LOST, buf, 4, &written),
                TESSERA_INSUFFICIENT_SIZE);
  EXPECT(written > 4);
  EXPECT_RESULT(tessera_result_message(TESSERA_AGENT_LOST, buf, written, &written), TESSERA_OK);
  EXPECT(strstr(buf, "lease") != NULL);
  EXPECT_RESULT(tessera_result_message(TESSERA_OK, NULL, 0, &written), TESSERA_INSUFFICIENT_SIZE);
  EXPECT(written == 8);
  EXPECT_RESULT(tessera_result_message(4242, buf, sizeof buf, &written), TESSERA_INVALID_PARAMETER);
  EXPECT(tessera_result_is_license_error(TESSERA_LICENSE_EXPIRED));
  EXPECT(!tessera_result_is_license_error(TESSERA_OK));
  EXPECT(!tessera_result_is_license_error(4242));
  EXPECT(tessera_result_is_agent_error(TESSERA_AGENT_LOST));
  EXPECT(!tessera_result_is_agent_error(TESSERA_NO_SEAT));
  EXPECT(tessera_test_second_unit() == TESSERA_OK);
}

static void test_wrong_order(void) {
  tessera_client *c = NULL;
  tessera_lease lease = 0;
  tessera_state state;
  char buf[256];
  size_t written = 0;
  EXPECT_RESULT(tessera_client_new(PRODUCT, "api-test", "1.0", &c), TESSERA_OK);
  /* Everything before connect: refused cleanly, nothing crashes. */
  EXPECT_RESULT(tessera_client_check(c, "solver"), TESSERA_NOT_CONNECTED);
  EXPECT_RESULT(tessera_client_checkout(c, "solver", &lease), TESSERA_NOT_CONNECTED);
  EXPECT(lease == 0);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strstr(buf, "connect") != NULL);
  EXPECT_RESULT(tessera_client_check_new_versions(c), TESSERA_NOT_CONNECTED);
  EXPECT_RESULT(tessera_client_release(c, 7), TESSERA_LEASE_NOT_FOUND);
  EXPECT_RESULT(tessera_client_state(c, &state), TESSERA_OK);
  EXPECT(state.state == TESSERA_STATE_UNKNOWN && state.link == TESSERA_LINK_NOT_CONNECTED);
  EXPECT_RESULT(tessera_client_state_json(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strcmp(buf, "null") == 0 && written == 4);
  EXPECT_RESULT(tessera_client_free(c), TESSERA_OK);
}

static atomic_int events_seen;
static atomic_int free_refusals;
static atomic_int set_refusals;
static atomic_int inner_calls_ok;
static atomic_int upgrades_seen;
static atomic_int finalized;
static pthread_t main_thread;

static void on_event(void *userdata, tessera_event_kind kind, const char *json) {
  tessera_client *c = (tessera_client *)userdata;
  EXPECT(!pthread_equal(pthread_self(), main_thread));
  EXPECT(json != NULL && strstr(json, "\"operate\"") != NULL);
  if (kind == TESSERA_EVENT_UPGRADENOTICE) {
    /* Calls back into the client are fine from a callback (ISCDesk apps answer here)... */
    if (tessera_client_upgrade_notify(c, false) == TESSERA_OK &&
        tessera_client_check(c, "solver") == TESSERA_OK) {
      atomic_fetch_add(&inner_calls_ok, 1);
    }
    /* ...but freeing the client or replacing the callback would wait for ourselves. */
    if (tessera_client_free(c) == TESSERA_CALLED_FROM_CALLBACK) atomic_fetch_add(&free_refusals, 1);
    if (tessera_client_set_event_callback(c, NULL, NULL, NULL) == TESSERA_CALLED_FROM_CALLBACK)
      atomic_fetch_add(&set_refusals, 1);
    atomic_fetch_add(&upgrades_seen, 1);
  }
  atomic_fetch_add(&events_seen, 1);
}

static void count_finalize(void *userdata) {
  (void)userdata;
  atomic_fetch_add(&finalized, 1);
}

static atomic_int log_lines;
static void on_log(void *userdata, tessera_log_level level, const char *message) {
  (void)userdata;
  EXPECT(level >= TESSERA_LOG_ERROR && level <= TESSERA_LOG_INFO);
  EXPECT(message != NULL && strlen(message) > 0);
  fprintf(stderr, "log: %s\n", message);
  atomic_fetch_add(&log_lines, 1);
}

static void test_every_call(void) {
  tessera_client *c = NULL;
  tessera_lease a = 0, b = 0, extra = 0;
  tessera_state state;
  tessera_event_kind kind = 0;
  char buf[4096];
  char small[8];
  size_t written = 0;

  main_thread = pthread_self();
  EXPECT_RESULT(tessera_client_new(PRODUCT, "api-test", "1.0", &c), TESSERA_OK);
  EXPECT_RESULT(tessera_client_set_log_callback(c, on_log, NULL, count_finalize, 9),
                TESSERA_INVALID_PARAMETER);
  EXPECT_RESULT(tessera_client_set_log_callback(c, on_log, NULL, count_finalize, TESSERA_LOG_INFO),
                TESSERA_OK);
  EXPECT_RESULT(tessera_client_connect(c, 5000), TESSERA_OK);
  EXPECT_RESULT(tessera_client_connect(c, 0), TESSERA_OK); /* idempotent */
  WAIT_UNTIL(atomic_load(&log_lines) > 0);

  EXPECT_RESULT(tessera_client_check(c, "solver"), TESSERA_OK);
  EXPECT_RESULT(tessera_client_check(c, "mesher"), TESSERA_OK);
  EXPECT_RESULT(tessera_client_check(c, "export.step"), TESSERA_FEATURE_NOT_LICENSED);
  EXPECT_RESULT(tessera_client_check(c, ""), TESSERA_FEATURE_NOT_LICENSED);

  EXPECT_RESULT(tessera_client_state(c, &state), TESSERA_OK);
  EXPECT(state.state == TESSERA_STATE_ACTIVE && state.reason == TESSERA_REASON_LICENSED);
  EXPECT(state.link == TESSERA_LINK_CONNECTED && state.expires_at == 1900000000 && state.deadline == 0);
  EXPECT_RESULT(tessera_client_state_json(c, small, sizeof small, &written), TESSERA_INSUFFICIENT_SIZE);
  EXPECT(written > sizeof small);
  EXPECT_RESULT(tessera_client_state_json(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strstr(buf, "\"product_id\":\"foocad\"") != NULL && strlen(buf) == written);

  EXPECT_RESULT(tessera_client_checkout(c, "solver", &a), TESSERA_OK);
  EXPECT_RESULT(tessera_client_checkout(c, "solver", &b), TESSERA_OK);
  EXPECT(a != 0 && b != 0 && a != b);
  EXPECT_RESULT(tessera_client_checkout(c, "solver", &extra), TESSERA_NO_SEAT);
  EXPECT(extra == 0);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(written > 0);
  EXPECT_RESULT(tessera_client_checkout(c, "export.step", &extra), TESSERA_FEATURE_NOT_LICENSED);
  EXPECT_RESULT(tessera_client_release(c, a), TESSERA_OK);
  EXPECT_RESULT(tessera_client_release(c, a), TESSERA_LEASE_NOT_FOUND);

  /* Pull API: no callback set, so events queue. */
  EXPECT_RESULT(tessera_client_next_event(c, &kind, buf, sizeof buf, &written), TESSERA_NO_EVENT);
  EXPECT_RESULT(tessera_client_request_license(c, 99, NULL, NULL), TESSERA_INVALID_PARAMETER);
  EXPECT_RESULT(tessera_client_request_license(c, TESSERA_LICENSE_STRING, NULL, NULL), TESSERA_OK);
  WAIT_UNTIL(tessera_client_next_event(c, &kind, small, sizeof small, &written) ==
             TESSERA_INSUFFICIENT_SIZE);
  EXPECT(written > sizeof small); /* the event stays queued */
  EXPECT_RESULT(tessera_client_next_event(c, &kind, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(kind == TESSERA_EVENT_LICENSE_VERIFY);
  EXPECT(strstr(buf, "\"operate\":\"LicenseVerify\"") != NULL);
  EXPECT(strstr(buf, "\"LicenseType\":\"string\"") != NULL);
  EXPECT_RESULT(tessera_client_request_license(c, TESSERA_LICENSE_FILE, "foo.lic", "dev"), TESSERA_OK);
  WAIT_UNTIL(tessera_client_next_event(c, &kind, buf, sizeof buf, &written) == TESSERA_OK);
  EXPECT(kind == TESSERA_EVENT_LICENSE_VERIFY && strstr(buf, "\"LicenseFilePath\"") != NULL);

  EXPECT_RESULT(tessera_client_verify_notify(c, true, NULL), TESSERA_OK);
  EXPECT_RESULT(tessera_client_verify_notify(c, false, "signature mismatch"), TESSERA_OK);
  EXPECT_RESULT(tessera_client_trial_expired(c, TESSERA_LICENSE_FILE, NULL, NULL), TESSERA_OK);
  EXPECT_RESULT(tessera_client_trial_expired(c, TESSERA_LICENSE_STRING, "dev", "x.lic"), TESSERA_OK);
  EXPECT_RESULT(tessera_client_trial_expired(c, 0, NULL, NULL), TESSERA_INVALID_PARAMETER);
  EXPECT_RESULT(tessera_client_upgrade_notify(c, true), TESSERA_OK);
  /* A code issued and accepted on the marketplace emulator; one it never issued is refused. */
  EXPECT_RESULT(tessera_client_activate_code(c, test_env("TESSERA_TEST_CODE")), TESSERA_OK);
  EXPECT(tessera_client_activate_code(c, "nonsense") != TESSERA_OK);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strstr(buf, "code") != NULL);
  EXPECT_RESULT(tessera_client_activate_code(c, ""), TESSERA_INVALID_PARAMETER);
  /* The License the agent holds imports again; garbage never replaces it. */
  EXPECT_RESULT(tessera_client_import_license_string(c, test_env("TESSERA_TEST_LICENSE")), TESSERA_OK);
  EXPECT_RESULT(tessera_client_import_license_string(c, "garbage"), TESSERA_INVALID_PARAMETER);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strstr(buf, "License") != NULL);
  EXPECT(tessera_client_import_license_file(c, "/nonexistent/x.lic") != TESSERA_OK);
  EXPECT_RESULT(tessera_client_last_error(c, buf, sizeof buf, &written), TESSERA_OK);
  EXPECT(strstr(buf, "/nonexistent/x.lic") != NULL);
  EXPECT_RESULT(tessera_client_state(c, &state), TESSERA_OK);
  EXPECT(state.state == TESSERA_STATE_ACTIVE && state.expires_at == 1900000000);

  /* Callback: events arrive on the SDK's thread; calls from inside work, free is refused. */
  EXPECT_RESULT(tessera_client_set_event_callback(c, on_event, c, count_finalize), TESSERA_OK);
  EXPECT_RESULT(tessera_client_check_new_versions(c), TESSERA_OK);
  WAIT_UNTIL(atomic_load(&upgrades_seen) >= 1);
  EXPECT(atomic_load(&events_seen) >= 1);
  EXPECT(atomic_load(&inner_calls_ok) == 1);
  EXPECT(atomic_load(&free_refusals) == 1);
  EXPECT(atomic_load(&set_refusals) == 1);
  /* Replacing the callback finalizes the previous userdata. */
  EXPECT_RESULT(tessera_client_set_event_callback(c, NULL, NULL, NULL), TESSERA_OK);
  EXPECT(atomic_load(&finalized) == 1);

  /* Free while events are pending: queued events are discarded, no leak, no crash. */
  EXPECT_RESULT(tessera_client_check_new_versions(c), TESSERA_OK);
  EXPECT_RESULT(tessera_client_request_license(c, TESSERA_LICENSE_STRING, NULL, NULL), TESSERA_OK);
  EXPECT_RESULT(tessera_client_free(c), TESSERA_OK);
  EXPECT(atomic_load(&finalized) == 2); /* the log callback's userdata */
}

int main(void) {
  test_null_arguments();
  test_results_and_version();
  test_wrong_order();
  test_every_call();
  printf("api: all expectations hold\n");
  return 0;
}
