// Delivery receipts of template messages: the customer's device signs that it received and
// accepted a template message, so that the business holds proof of delivery that neither the
// relay nor the business could have made up.
//
// Signed bytes: `tresen-delivery-v1\0` + the msgpack map (keys in this order) of
// `{message_id, business, customer, device_id, template_id, delivered_ms}`, signed with the
// device's Ed25519 identity key. The payload that carries it is `delivery_receipt`
// (wire/payloads.ts).

import { pack } from "../wire/msgpack";
import { fromBase64, toBase64 } from "../wire/base64";
import { verifyEd25519 } from "./ed25519";
import { concat, type DeviceIdentity } from "./olm";

export const DELIVERY_PREFIX = new TextEncoder().encode("tresen-delivery-v1\0");

/** What a receipt's signature covers. */
export interface DeliveryStatement {
  /** The relay's message id of the template message. */
  message_id: string;
  /** The business account that sent it. */
  business: string;
  /** This customer's account. */
  customer: string;
  device_id: number;
  template_id: string;
  /** When this device decrypted the message, by its clock (Unix milliseconds). */
  delivered_ms: number;
}

/** The exact bytes the device signs. */
export function deliverySigned(statement: DeliveryStatement): Uint8Array {
  const { message_id, business, customer, device_id, template_id, delivered_ms } = statement;
  return concat(DELIVERY_PREFIX, pack({ message_id, business, customer, device_id, template_id, delivered_ms }));
}

/** This device's signature (64 bytes) over the statement. */
export function signDelivery(identity: DeviceIdentity, statement: DeliveryStatement): Uint8Array {
  return fromBase64(identity.sign(deliverySigned(statement)));
}

/** Whether `signature` is the device with identity key `ed25519`'s signature of `statement`. */
export function verifyDelivery(ed25519: string, statement: DeliveryStatement, signature: Uint8Array): Promise<boolean> {
  return verifyEd25519(ed25519, deliverySigned(statement), toBase64(signature, false));
}
