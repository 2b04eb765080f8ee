// The one place that includes the PKCS#11 C header (p11-kit's copy, which is
// the full 2.40 set plus vendor-neutral 3.0 additions such as CKM_EDDSA).
#pragma once
#include <p11-kit/pkcs11.h>
