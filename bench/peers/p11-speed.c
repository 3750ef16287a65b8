/*
 * The limit of a PKCS#11 token key: how many ECDSA signatures per second the module itself makes,
 * with no Node, no binding and no certificate around it. bench/hsm.ts builds it at run time:
 *
 *   gcc -O2 -pthread -I/usr/include/p11-kit-1 -o p11-speed p11-speed.c -ldl
 *   p11-speed MODULE TOKEN-LABEL PIN-FILE KEY-LABEL SECONDS THREADS
 *
 * Each thread opens its own session and loops C_SignInit + C_Sign (CKM_ECDSA over a fixed 32-byte
 * digest, as mutual signs on SoftHSM2, which has no CKM_ECDSA_SHA256) until SECONDS have passed.
 * KEY-LABEL names the private key (CKA_LABEL); "+LABEL" first makes a P-256 key pair on the token
 * (token objects, kept) labelled LABEL, for peers that need a key of their own (openssl's engine);
 * "-" makes a session key pair, gone at exit. SECONDS 0 only makes the key.
 * The PIN is read from PIN-FILE, not taken from the command line, where `ps` would show it.
 * C_Initialize gets CKF_OS_LOCKING_OK: SoftHSM2 2.6.1 crashes under concurrent sessions without it.
 * Prints one JSON line: {"threads":T,"signatures":N,"seconds":S,"perSecond":R,"initMicros":I,"signMicros":G},
 * I and G the mean wall time of one C_SignInit and one C_Sign in the first thread: SoftHSM2 does
 * most of its work (loading and decrypting the key) in C_SignInit, which mutual calls on the event
 * loop's thread, and signs in C_Sign, which mutual runs on libuv's pool.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE key;
static double seconds;

static void die(const char *what, CK_RV rv) {
  fprintf(stderr, "p11-speed: %s failed: CKR 0x%lx\n", what, (unsigned long)rv);
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct result { unsigned long count; double init, sign; };

static void *sign_loop(void *arg) {
  struct result *r = arg;
  CK_SESSION_HANDLE s;
  CK_RV rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) die("C_OpenSession", rv);
  CK_BYTE digest[32];
  for (int i = 0; i < 32; i++) digest[i] = (CK_BYTE)(i * 7 + 1);
  CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
  CK_BYTE sig[132];
  double end = now() + seconds, init = 0, sign = 0;
  unsigned long n = 0;
  // Three clock reads a signature (vDSO, ~25 ns each) against ~70 us of signing.
  for (;;) {
    double t0 = now();
    if (t0 >= end) break;
    CK_ULONG len = sizeof sig;
    rv = p11->C_SignInit(s, &mech, key);
    if (rv != CKR_OK) die("C_SignInit", rv);
    double t1 = now();
    rv = p11->C_Sign(s, digest, sizeof digest, sig, &len);
    if (rv != CKR_OK) die("C_Sign", rv);
    init += t1 - t0;
    sign += now() - t1;
    n++;
  }
  r->init = n ? init / n * 1e6 : 0;
  r->sign = n ? sign / n * 1e6 : 0;
  p11->C_CloseSession(s);
  r->count = n;
  return NULL;
}

/*
 * A P-256 key pair made on the token, private, sensitive and never extractable as mutual makes
 * them: token objects labelled `label` (with CKA_ID 01, which openssl's engine wants to pair the
 * halves), or session objects (gone when the sessions close) when `label` is NULL.
 */
static CK_OBJECT_HANDLE generate_key(CK_SESSION_HANDLE s, const char *label) {
  static CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
  static CK_BYTE id[] = { 0x01 };
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_BBOOL *token = label ? &yes : &no;
  CK_ULONG labelLen = label ? strlen(label) : 0;
  CK_ATTRIBUTE pub[] = {
    { CKA_EC_PARAMS, p256, sizeof p256 }, { CKA_VERIFY, &yes, sizeof yes }, { CKA_TOKEN, token, sizeof yes },
    { CKA_ID, id, sizeof id }, { CKA_LABEL, (void *)label, labelLen },
  };
  CK_ATTRIBUTE priv[] = {
    { CKA_SIGN, &yes, sizeof yes }, { CKA_TOKEN, token, sizeof yes }, { CKA_PRIVATE, &yes, sizeof yes },
    { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_EXTRACTABLE, &no, sizeof no },
    { CKA_ID, id, sizeof id }, { CKA_LABEL, (void *)label, labelLen },
  };
  CK_ULONG npub = label ? 5 : 3, npriv = label ? 7 : 5;
  CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
  CK_OBJECT_HANDLE pubh, privh;
  CK_RV rv = p11->C_GenerateKeyPair(s, &mech, pub, npub, priv, npriv, &pubh, &privh);
  if (rv != CKR_OK) die("C_GenerateKeyPair", rv);
  return privh;
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, const char *label) {
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, (void *)label, strlen(label) } };
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  CK_RV rv = p11->C_FindObjectsInit(s, tmpl, 2);
  if (rv != CKR_OK) die("C_FindObjectsInit", rv);
  rv = p11->C_FindObjects(s, found, 2, &n);
  if (rv != CKR_OK) die("C_FindObjects", rv);
  p11->C_FindObjectsFinal(s);
  if (n != 1) {
    fprintf(stderr, "p11-speed: %lu private keys labelled %s, need exactly one\n", (unsigned long)n, label);
    exit(1);
  }
  return found[0];
}

static CK_SLOT_ID find_slot(const char *token) {
  CK_SLOT_ID slots[64];
  CK_ULONG n = 64;
  CK_RV rv = p11->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK) die("C_GetSlotList", rv);
  for (CK_ULONG i = 0; i < n; i++) {
    CK_TOKEN_INFO info;
    if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    // Token labels are 32 bytes padded with spaces.
    size_t len = strlen(token);
    if (len <= 32 && memcmp(info.label, token, len) == 0) {
      int pad = 1;
      for (size_t j = len; j < 32; j++) pad &= info.label[j] == ' ';
      if (pad) return slots[i];
    }
  }
  fprintf(stderr, "p11-speed: no token labelled %s\n", token);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: p11-speed MODULE TOKEN-LABEL PIN-FILE KEY-LABEL SECONDS THREADS\n");
    return 2;
  }
  seconds = atof(argv[5]);
  int threads = atoi(argv[6]);
  if (seconds < 0 || threads < 1 || threads > 64) {
    fprintf(stderr, "p11-speed: SECONDS >= 0 and 1 <= THREADS <= 64\n");
    return 2;
  }
  char pin[256];
  FILE *pf = fopen(argv[3], "r");
  if (!pf || !fgets(pin, sizeof pin, pf)) {
    fprintf(stderr, "p11-speed: cannot read the PIN file %s\n", argv[3]);
    return 1;
  }
  fclose(pf);
  pin[strcspn(pin, "\r\n")] = 0;

  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "p11-speed: %s\n", dlerror());
    return 1;
  }
  CK_C_GetFunctionList getList = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
  if (!getList) {
    fprintf(stderr, "p11-speed: %s has no C_GetFunctionList\n", argv[1]);
    return 1;
  }
  CK_RV rv = getList(&p11);
  if (rv != CKR_OK) die("C_GetFunctionList", rv);
  CK_C_INITIALIZE_ARGS init = { NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL };
  rv = p11->C_Initialize(&init);
  if (rv != CKR_OK) die("C_Initialize", rv);
  slot = find_slot(argv[2]);

  // This session stays open to the end: it holds the login (shared by all sessions of the
  // process) and, for a generated key, keeps the session objects alive.
  CK_SESSION_HANDLE s;
  rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) die("C_OpenSession", rv);
  rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
  memset(pin, 0, sizeof pin);
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) die("C_Login", rv);
  const char *label = argv[4];
  key = strcmp(label, "-") == 0 ? generate_key(s, NULL) : label[0] == '+' ? generate_key(s, label + 1) : find_key(s, label);

  pthread_t tid[64];
  struct result res[64];
  if (seconds == 0) threads = 0;
  double t0 = now();
  for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, sign_loop, &res[i]);
  unsigned long total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(tid[i], NULL);
    total += res[i].count;
  }
  double took = now() - t0;
  p11->C_Logout(s);
  p11->C_CloseSession(s);
  p11->C_Finalize(NULL);
  printf("{\"threads\":%d,\"signatures\":%lu,\"seconds\":%.3f,\"perSecond\":%.0f,\"initMicros\":%.1f,\"signMicros\":%.1f}\n", threads, total, took,
         took > 0 ? total / took : 0, threads ? res[0].init : 0, threads ? res[0].sign : 0);
  return 0;
}
