// Safety numbers on their own (tests/crypto/test_safety.py), with its known-answer vector.

import { beforeAll, describe, expect, it } from "vitest";
import { KeyFormatError } from "../src/crypto/keys";
import { DeviceIdentity, initOlm } from "../src/crypto/olm";
import { fingerprint, type Party, safetyNumber } from "../src/crypto/safety";

// The fixed keys of the Python known-answer vector.
const KEY_1 = "TrC1bfDxxEp1PrhNxlZ1D/oFEYSZFy15TuP8+q/o7gw";
const KEY_2 = "cYwvYfFH1sOD7zJ5ATSzCBwxyp+OWRS+34aJilhha14";
const KEY_3 = "ABUYtiqMQ3i53qOGE/Rue6Tu8Zu++lj+cJypfs/v5Ao";

beforeAll(async () => {
  await initOlm();
});

function party(phone = "+4915112345678", devices = 1): Party {
  return { phone, identityKeys: Array.from({ length: devices }, () => DeviceIdentity.create().ed25519) };
}

describe("safety numbers", () => {
  it("match the known answer", async () => {
    const customer = { phone: "+4915112345678", identityKeys: [KEY_2, KEY_1] };
    const business = { phone: "+14155550123", identityKeys: [KEY_3] };
    expect(await fingerprint(customer)).toBe("757822775731807516976632774632");
    expect(await fingerprint(business)).toBe("938940254417853757283652843406");
    expect(await safetyNumber(customer, business)).toBe("75782 27757 31807 51697 66327 74632 93894 02544 17853 75728 36528 43406");
  });

  it("are the same on both sides, twelve groups of five digits", async () => {
    const customer = party();
    const business = party("+4930123456", 3);
    const number = await safetyNumber(customer, business);
    expect(number).toBe(await safetyNumber(business, customer));
    expect(number).toMatch(/^\d{5}( \d{5}){11}$/);
  });

  it("do not depend on the order of devices, and change with every key and number", async () => {
    expect(await fingerprint({ phone: "+4915112345678", identityKeys: [KEY_1, KEY_2] })).toBe(
      await fingerprint({ phone: "+4915112345678", identityKeys: [KEY_2, KEY_1] }),
    );
    const mine = party("+4915112345678", 2);
    const theirs = party("+14155550123");
    const before = await safetyNumber(mine, theirs);
    const changed: Party[] = [
      { ...mine, identityKeys: [mine.identityKeys[0]!, DeviceIdentity.create().ed25519] },
      { ...mine, identityKeys: [...mine.identityKeys, DeviceIdentity.create().ed25519] },
      { ...mine, identityKeys: mine.identityKeys.slice(0, 1) },
      { ...mine, phone: "+4915199999999" },
    ];
    for (const other of changed) expect(await safetyNumber(other, theirs)).not.toBe(before);
  });

  it("refuse a phone number not in E.164 and keys that are not Ed25519 keys", async () => {
    for (const phone of ["", "4915112345678", "+0123", "+49 151 1234", "+1234567890123456"]) {
      await expect(fingerprint({ phone, identityKeys: [KEY_1] })).rejects.toThrow(/E\.164/);
    }
    await expect(fingerprint({ phone: "+4915112345678", identityKeys: [] })).rejects.toThrow("at least one");
    // The last is 32 bytes, but no point of the curve (y = 2), which vodozemac refuses too.
    for (const bad of [`${KEY_1}=`, "AAAA", "not a key", "Ag".padEnd(43, "A")]) {
      await expect(fingerprint({ phone: "+4915112345678", identityKeys: [bad] })).rejects.toThrow(KeyFormatError);
    }
  });
});
