/* cad-demo: a tiny "CAD application" licensed through libtessera.
 *
 * It checks its features at start and before every command, takes a seat of the solver for the
 * length of a solve, disables its commands (and tells the user how to renew) when
 * EVENT_LICENSE_STATE says the License is blocked, and saves and exits on EVENT_UPDATE.
 *
 * Commands, one per line on stdin: solve, mesh, status, quit. */
#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tessera.h"

#define PRODUCT "foocad"

static atomic_bool licence_blocked;
static atomic_bool update_requested;

/* Tells the user what a result means and, for License problems, how to renew. */
static void explain(const tessera_client *client, tessera_result r) {
  char text[256];
  size_t written = 0;
  if (tessera_result_message(r, text, sizeof text, &written) != TESSERA_OK) {
    snprintf(text, sizeof text, "error %u", (unsigned)r);
  }
  printf("  -> not available: %s\n", text);
  if (tessera_result_is_license_error(r)) {
    printf("  -> to renew: open your KooGallery order and renew it, or import a new License with\n"
           "     `tessera import <file>`; the commands come back by themselves.\n");
  } else if (tessera_result_is_agent_error(r)) {
    printf("  -> is the Tessera agent running? `tessera status` tells.\n");
  }
  if (client != NULL && tessera_client_last_error(client, text, sizeof text, &written) == TESSERA_OK &&
      written > 0) {
    printf("  -> detail: %s\n", text);
  }
}

static void on_event(void *userdata, tessera_event_kind kind, const char *json) {
  (void)userdata;
  switch (kind) {
    case TESSERA_EVENT_LICENSE_STATE:
      if (strstr(json, "\"state\":\"Blocked\"") != NULL) {
        atomic_store(&licence_blocked, true);
        printf("[license] blocked: commands disabled. Renew the subscription on KooGallery or "
               "import a new License; the commands come back by themselves.\n");
      } else {
        atomic_store(&licence_blocked, false);
        printf("[license] usable again: commands enabled.\n");
      }
      break;
    case TESSERA_EVENT_UPDATE:
      printf("[update] an update is ready (%s): saving your work and exiting.\n",
             strstr(json, "\"fromForceWin\":\"true\"") != NULL ? "forced" : "accepted");
      atomic_store(&update_requested, true);
      break;
    default:
      break; /* kinds this demo does not use, including ones added later */
  }
}

static void run_command(const tessera_client *client, const char *line) {
  if (strcmp(line, "solve") == 0) {
    tessera_result r = tessera_client_check(client, "solver");
    if (r != TESSERA_OK || atomic_load(&licence_blocked)) {
      printf("solve: disabled\n");
      explain(client, r == TESSERA_OK ? TESSERA_LICENSE_BLOCKED : r);
      return;
    }
    tessera_lease seat = 0;
    r = tessera_client_checkout(client, "solver", &seat);
    if (r != TESSERA_OK) {
      printf("solve: no seat\n");
      explain(client, r);
      return;
    }
    printf("solve: solved (seat %llu)\n", (unsigned long long)seat);
    tessera_client_release(client, seat);
  } else if (strcmp(line, "mesh") == 0) {
    tessera_result r = tessera_client_check(client, "mesher");
    if (r != TESSERA_OK) {
      printf("mesh: disabled\n");
      explain(client, r);
      return;
    }
    printf("mesh: meshed\n");
  } else if (strcmp(line, "status") == 0) {
    tessera_state s;
    if (tessera_client_state(client, &s) == TESSERA_OK) {
      printf("status: state=%u reason=%u link=%u expires_at=%lld\n", (unsigned)s.state,
             (unsigned)s.reason, (unsigned)s.link, (long long)s.expires_at);
    }
  } else if (line[0] != '\0') {
    printf("unknown command: %s\n", line);
  }
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  tessera_client *client = NULL;
  if (tessera_client_new(PRODUCT, "cad-demo", TESSERA_VERSION_STRING, &client) != TESSERA_OK) {
    fprintf(stderr, "cannot create the License client\n");
    return 2;
  }
  tessera_client_set_event_callback(client, on_event, NULL, NULL);
  tessera_result r = tessera_client_connect(client, 5000);
  if (r != TESSERA_OK) {
    printf("cannot reach the Tessera agent\n");
    explain(client, r);
    tessera_client_free(client);
    return 2;
  }
  printf("features at start: solver=%s mesher=%s\n",
         tessera_client_check(client, "solver") == TESSERA_OK ? "on" : "off",
         tessera_client_check(client, "mesher") == TESSERA_OK ? "on" : "off");
  printf("ready\n");

  char line[128];
  size_t used = 0;
  int status = 0;
  for (;;) {
    if (atomic_load(&update_requested)) {
      printf("saved. exiting for the update.\n");
      break;
    }
    struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
    if (poll(&in, 1, 50) <= 0) continue;
    char ch;
    ssize_t n = read(STDIN_FILENO, &ch, 1);
    if (n <= 0) break; /* end of input */
    if (ch != '\n' && used + 1 < sizeof line) {
      line[used++] = ch;
      continue;
    }
    line[used] = '\0';
    used = 0;
    if (strcmp(line, "quit") == 0) break;
    run_command(client, line);
  }
  tessera_client_free(client);
  return status;
}
