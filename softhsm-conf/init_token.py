"""Initialise the first free SoftHSM slot: label, SO PIN, user PIN.

Called by make-token.sh; takes everything from the environment (MT_MODULE,
MT_LABEL, MT_SO_PIN, MT_USER_PIN) so no PIN is ever on a command line.
"""
import os
import sys

import PyKCS11

lib = PyKCS11.PyKCS11Lib()
lib.load(os.environ["MT_MODULE"])
label = os.environ["MT_LABEL"]
so_pin = os.environ["MT_SO_PIN"]
user_pin = os.environ["MT_USER_PIN"]

free = None
for slot in lib.getSlotList(tokenPresent=True):
    info = lib.getTokenInfo(slot)
    if not info.flags & PyKCS11.CKF_TOKEN_INITIALIZED:
        free = slot
        break
if free is None:
    sys.exit("init_token.py: no uninitialised SoftHSM slot")

# PKCS#11 labels are 32 bytes padded with blanks; PyKCS11 would pad with NULs.
lib.initToken(free, so_pin, label.ljust(32))
# C_InitToken reassigns the slot id; find the token again by label.
for slot in lib.getSlotList(tokenPresent=True):
    if lib.getTokenInfo(slot).label.strip(" \x00") == label:
        session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        session.login(so_pin, PyKCS11.CKU_SO)
        session.initPin(user_pin)
        session.logout()
        session.closeSession()
        break
else:
    sys.exit("init_token.py: token vanished after C_InitToken")
