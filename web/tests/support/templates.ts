// Template submissions of the Python tests (tests/client/test_templates.py), and the rendering
// in the shape the Python peer answers with.

import { renderedText, type RenderedTemplate } from "../../src/wire/templates";

export const ORDER = {
  name: "order_shipped",
  language: "en_US",
  category: "UTILITY",
  components: [
    { type: "HEADER", format: "TEXT", text: "Order {{1}}", example: { header_text: ["#1"] } },
    {
      type: "BODY",
      text: "Hi {{1}}, your order ships on {{2}}. Thanks, {{1}}!",
      example: { body_text: [["Anna", "Monday"]] },
    },
    { type: "FOOTER", text: "Reply STOP to opt out" },
    {
      type: "BUTTONS",
      buttons: [
        { type: "QUICK_REPLY", text: "Track" },
        { type: "URL", text: "View", url: "https://shop.example/o/{{1}}", example: ["1"] },
        { type: "PHONE_NUMBER", text: "Call us", phone_number: "+4930123456" },
      ],
    },
  ],
};

export const NAMED = {
  name: "order_named",
  language: "de",
  category: "UTILITY",
  parameter_format: "NAMED",
  components: [
    {
      type: "BODY",
      text: "Hallo {{first_name}}, Bestellung {{order_id}} ist unterwegs.",
      example: {
        body_text_named_params: [
          { param_name: "first_name", example: "Anna" },
          { param_name: "order_id", example: "4711" },
        ],
      },
    },
  ],
};

export const LOGIN = {
  name: "login_code",
  language: "en",
  category: "AUTHENTICATION",
  components: [
    { type: "BODY", add_security_recommendation: true },
    { type: "FOOTER", code_expiration_minutes: 10 },
    { type: "BUTTONS", buttons: [{ type: "OTP", otp_type: "COPY_CODE" }] },
  ],
};

export const PROMO = {
  name: "summer_sale",
  language: "en",
  category: "MARKETING",
  components: [
    { type: "HEADER", format: "IMAGE" },
    { type: "BODY", text: "Our summer sale is on." },
    { type: "BUTTONS", buttons: [{ type: "COPY_CODE", example: "SUMMER25" }] },
  ],
};

export const BOARDING = {
  name: "boarding_pass",
  language: "en_US",
  category: "UTILITY",
  components: [
    { type: "HEADER", format: "DOCUMENT", example: { header_handle: ["https://a.example/b.pdf"] } },
    { type: "BODY", text: "Hi {{1}}, your flight leaves on {{2}}.", example: { body_text: [["Anna", "Monday"]] } },
  ],
};

/** A URL button whose placeholder is the whole host. */
export const ANY_HOST = {
  name: "any_host",
  language: "en",
  category: "UTILITY",
  components: [
    { type: "BODY", text: "Your link is ready." },
    { type: "BUTTONS", buttons: [{ type: "URL", text: "Open", url: "https://{{1}}", example: ["x.example"] }] },
  ],
};

export const GOOD = { header: ["#4711"], body: ["Anna", "Monday"], "button:1": ["4711"] };

/** The rendering as the Python peer writes it: every field, null where unset. */
export function renderedJson(shown: RenderedTemplate): unknown {
  return {
    template_id: shown.template_id,
    name: shown.name,
    language: shown.language,
    category: shown.category,
    body: shown.body,
    header: shown.header
      ? { format: shown.header.format, text: shown.header.text ?? null, media: shown.header.media ?? null }
      : null,
    footer: shown.footer ?? null,
    buttons: shown.buttons.map((b) => ({
      type: b.type,
      text: b.text,
      url: b.url ?? null,
      phone_number: b.phone_number ?? null,
      code: b.code ?? null,
      payload: b.payload ?? null,
    })),
    text: renderedText(shown),
  };
}
