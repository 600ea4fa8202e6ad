// English and German. The language follows the browser until the user picks one.

const en = {
  "app.name": "Tresen",
  "app.loading": "Opening your chats…",
  "app.offline": "Offline — messages wait and go out when you are back online",
  "app.connecting": "Connecting…",
  "app.removed": "This browser was removed from your account. Register again to use it.",
  "register.title": "Chat with businesses, end to end encrypted",
  "register.lead": "Enter your phone number. We send you a code to check it is yours.",
  "register.phone": "Phone number",
  "register.phone_hint": "In international format, e.g. +49 151 12345678",
  "register.send_code": "Send code",
  "register.code": "Code",
  "register.code_hint": "The 6-digit code sent to {phone}",
  "register.device": "Name of this browser",
  "register.device_default": "Web browser",
  "register.verify": "Verify",
  "register.back": "Use another number",
  "register.link_note":
    "If this number already uses Tresen on another device, this browser becomes one more device of that account and sees new messages there too.",
  "register.operator": "Operator key of this server",
  "register.operator_note": "Compare it with the one your operator publishes before you continue.",
  "register.working": "Setting up encryption keys…",
  "chats.title": "Chats",
  "chats.empty": "No chats yet. Find a business to start one.",
  "chats.find": "Find businesses",
  "chats.new": "New chat",
  "chats.settings": "Settings",
  "chats.unread": "{n} unread",
  "chat.placeholder": "Message",
  "chat.send": "Send",
  "chat.back": "Back",
  "chat.typing": "typing…",
  "chat.business": "Business",
  "chat.verified": "Verified business",
  "chat.unverified": "Not verified",
  "chat.open_now": "Open now",
  "chat.closed_now": "Closed now",
  "chat.closes_at": "closes at {time}",
  "chat.opens_at": "opens {time}",
  "chat.encrypted": "Messages in this chat are end-to-end encrypted. Nobody else, not even the operator, can read them.",
  "chat.pending": "Waiting to send",
  "chat.sent": "Sent",
  "chat.delivered": "Delivered",
  "chat.read": "Read",
  "chat.failed": "Not delivered",
  "chat.waiting": "Waiting for this message",
  "chat.undecryptable": "This message could not be decrypted.",
  "chat.refused": "This message was refused: {reason}",
  "chat.template_refused": "This message does not match the template the operator approved and was not shown. It was reported.",
  "chat.unsupported": "This message needs a newer version of Tresen.",
  "chat.delete_pending": "Delete",
  "chat.choose": "Choose",
  "chat.identity_changed":
    "The security keys of this contact changed. Compare safety numbers before you send anything.",
  "chat.identity_trust": "I compared them — trust the new keys",
  "chat.safety": "Safety number",
  "chat.profile": "Profile",
  "chat.load_earlier": "Earlier messages",
  "chat.blocked": "You blocked this business. Unblock to write again.",
  "business.about": "About",
  "business.address": "Address",
  "business.email": "Email",
  "business.website": "Website",
  "business.hours": "Opening hours",
  "business.closed": "Closed",
  "business.message": "Message",
  "business.block": "Block",
  "business.unblock": "Unblock",
  "business.report": "Report",
  "business.report_and_block": "Report and block",
  "business.reported": "Reported. Thank you.",
  "business.verified_by": "Verified by the operator of this server",
  "business.tick_reason.none": "This business is not verified by the operator.",
  "business.tick_reason.revoked": "The operator revoked this business's verification.",
  "business.tick_reason.expired": "The verification of this business has expired.",
  "business.tick_reason.mismatch": "This business's keys or name do not match its certificate.",
  "business.tick_reason.unavailable": "The verification could not be checked right now.",
  "business.tick_reason.verified": "Verified by the operator of this server",
  "business.consent": "Messages from this business",
  "business.consent.utility": "Order and account updates",
  "business.consent.marketing": "Offers and news",
  "consent.stopped": "You will no longer receive marketing messages from {name}. Send START to receive them again.",
  "consent.started": "You will now receive marketing messages from {name}. Send STOP to stop them.",
  "consent.failed": "Your choice could not be recorded ({reason}). Please send it again.",
  "find.title": "Find businesses",
  "find.placeholder": "Search by name",
  "find.none": "No business found.",
  "find.phone": "Or write to a phone number",
  "find.start": "Start chat",
  "settings.title": "Settings",
  "settings.account": "Your account",
  "settings.phone": "Phone number",
  "settings.device": "This browser",
  "settings.devices": "Your devices",
  "settings.remove": "Remove",
  "settings.operator": "Operator key fingerprint",
  "settings.language": "Language",
  "settings.privacy": "Privacy: who may message you",
  "settings.blocked": "Blocked businesses",
  "settings.none_blocked": "You have not blocked anyone.",
  "settings.notifications": "Notifications",
  "settings.notifications_on": "Show notifications while Tresen is open",
  "privacy.title": "Consent",
  "privacy.lead":
    "Businesses may send you notifications and offers only with your consent. You can withdraw it here at any time.",
  "privacy.none": "No business has your consent on record.",
  "privacy.revoke": "Withdraw all",
  "privacy.opted_in": "Allowed",
  "privacy.opted_out": "Not allowed",
  "privacy.source.business": "Recorded by the business: {evidence}",
  "privacy.source.customer": "Your decision",
  "privacy.allow": "Allow",
  "privacy.stop": "Stop",
  "safety.title": "Safety number",
  "safety.lead":
    "Compare these numbers with the ones on {name}'s device, in person or by a call. If they match, nobody sits between you.",
  "error.generic": "Something went wrong: {message}",
  "error.offline": "The server cannot be reached. Try again in a moment.",
  "error.code": "Error {code}: {message}",
  "time.yesterday": "Yesterday",
  "status.online": "Online",
};

export type Key = keyof typeof en;

const de: Record<Key, string> = {
  "app.name": "Tresen",
  "app.loading": "Deine Chats werden geöffnet…",
  "app.offline": "Offline – Nachrichten warten und gehen raus, sobald du wieder online bist",
  "app.connecting": "Verbinde…",
  "app.removed": "Dieser Browser wurde aus deinem Konto entfernt. Registriere ihn neu, um ihn zu nutzen.",
  "register.title": "Mit Unternehmen chatten, Ende-zu-Ende-verschlüsselt",
  "register.lead": "Gib deine Telefonnummer ein. Wir schicken dir einen Code, um zu prüfen, dass sie dir gehört.",
  "register.phone": "Telefonnummer",
  "register.phone_hint": "Im internationalen Format, z. B. +49 151 12345678",
  "register.send_code": "Code senden",
  "register.code": "Code",
  "register.code_hint": "Der 6-stellige Code, der an {phone} ging",
  "register.device": "Name dieses Browsers",
  "register.device_default": "Webbrowser",
  "register.verify": "Bestätigen",
  "register.back": "Andere Nummer verwenden",
  "register.link_note":
    "Nutzt diese Nummer Tresen schon auf einem anderen Gerät, wird dieser Browser ein weiteres Gerät dieses Kontos und sieht neue Nachrichten auch dort.",
  "register.operator": "Betreiberschlüssel dieses Servers",
  "register.operator_note": "Vergleiche ihn mit dem, den dein Betreiber veröffentlicht, bevor du weitermachst.",
  "register.working": "Schlüssel für die Verschlüsselung werden eingerichtet…",
  "chats.title": "Chats",
  "chats.empty": "Noch keine Chats. Finde ein Unternehmen, um einen zu beginnen.",
  "chats.find": "Unternehmen finden",
  "chats.new": "Neuer Chat",
  "chats.settings": "Einstellungen",
  "chats.unread": "{n} ungelesen",
  "chat.placeholder": "Nachricht",
  "chat.send": "Senden",
  "chat.back": "Zurück",
  "chat.typing": "schreibt…",
  "chat.business": "Unternehmen",
  "chat.verified": "Verifiziertes Unternehmen",
  "chat.unverified": "Nicht verifiziert",
  "chat.open_now": "Jetzt geöffnet",
  "chat.closed_now": "Jetzt geschlossen",
  "chat.closes_at": "schließt um {time}",
  "chat.opens_at": "öffnet {time}",
  "chat.encrypted":
    "Nachrichten in diesem Chat sind Ende-zu-Ende-verschlüsselt. Niemand sonst, auch nicht der Betreiber, kann sie lesen.",
  "chat.pending": "Wartet auf Versand",
  "chat.sent": "Gesendet",
  "chat.delivered": "Zugestellt",
  "chat.read": "Gelesen",
  "chat.failed": "Nicht zugestellt",
  "chat.waiting": "Warte auf diese Nachricht",
  "chat.undecryptable": "Diese Nachricht konnte nicht entschlüsselt werden.",
  "chat.refused": "Diese Nachricht wurde abgelehnt: {reason}",
  "chat.template_refused":
    "Diese Nachricht passt nicht zur vom Betreiber freigegebenen Vorlage und wurde nicht angezeigt. Sie wurde gemeldet.",
  "chat.unsupported": "Für diese Nachricht brauchst du eine neuere Version von Tresen.",
  "chat.delete_pending": "Löschen",
  "chat.choose": "Auswählen",
  "chat.identity_changed":
    "Die Sicherheitsschlüssel dieses Kontakts haben sich geändert. Vergleiche die Sicherheitsnummern, bevor du etwas sendest.",
  "chat.identity_trust": "Verglichen – neuen Schlüsseln vertrauen",
  "chat.safety": "Sicherheitsnummer",
  "chat.profile": "Profil",
  "chat.load_earlier": "Frühere Nachrichten",
  "chat.blocked": "Du hast dieses Unternehmen blockiert. Hebe die Blockierung auf, um wieder zu schreiben.",
  "business.about": "Info",
  "business.address": "Adresse",
  "business.email": "E-Mail",
  "business.website": "Website",
  "business.hours": "Öffnungszeiten",
  "business.closed": "Geschlossen",
  "business.message": "Nachricht",
  "business.block": "Blockieren",
  "business.unblock": "Blockierung aufheben",
  "business.report": "Melden",
  "business.report_and_block": "Melden und blockieren",
  "business.reported": "Gemeldet. Danke.",
  "business.verified_by": "Vom Betreiber dieses Servers verifiziert",
  "business.tick_reason.none": "Dieses Unternehmen ist nicht vom Betreiber verifiziert.",
  "business.tick_reason.revoked": "Der Betreiber hat die Verifizierung dieses Unternehmens widerrufen.",
  "business.tick_reason.expired": "Die Verifizierung dieses Unternehmens ist abgelaufen.",
  "business.tick_reason.mismatch": "Schlüssel oder Name dieses Unternehmens passen nicht zu seinem Zertifikat.",
  "business.tick_reason.unavailable": "Die Verifizierung kann gerade nicht geprüft werden.",
  "business.tick_reason.verified": "Vom Betreiber dieses Servers verifiziert",
  "business.consent": "Nachrichten von diesem Unternehmen",
  "business.consent.utility": "Bestell- und Kontoinfos",
  "business.consent.marketing": "Angebote und Neuigkeiten",
  "consent.stopped": "Sie erhalten keine Werbenachrichten mehr von {name}. Senden Sie ANMELDEN, um sie wieder zu erhalten.",
  "consent.started": "Sie erhalten jetzt Werbenachrichten von {name}. Senden Sie ABMELDEN, um sie abzubestellen.",
  "consent.failed": "Ihre Wahl konnte nicht gespeichert werden ({reason}). Bitte senden Sie sie noch einmal.",
  "find.title": "Unternehmen finden",
  "find.placeholder": "Nach Namen suchen",
  "find.none": "Kein Unternehmen gefunden.",
  "find.phone": "Oder an eine Telefonnummer schreiben",
  "find.start": "Chat beginnen",
  "settings.title": "Einstellungen",
  "settings.account": "Dein Konto",
  "settings.phone": "Telefonnummer",
  "settings.device": "Dieser Browser",
  "settings.devices": "Deine Geräte",
  "settings.remove": "Entfernen",
  "settings.operator": "Fingerabdruck des Betreiberschlüssels",
  "settings.language": "Sprache",
  "settings.privacy": "Datenschutz: wer dir schreiben darf",
  "settings.blocked": "Blockierte Unternehmen",
  "settings.none_blocked": "Du hast niemanden blockiert.",
  "settings.notifications": "Benachrichtigungen",
  "settings.notifications_on": "Benachrichtigungen zeigen, solange Tresen offen ist",
  "privacy.title": "Einwilligungen",
  "privacy.lead":
    "Unternehmen dürfen dir Benachrichtigungen und Angebote nur mit deiner Einwilligung schicken. Du kannst sie hier jederzeit widerrufen.",
  "privacy.none": "Kein Unternehmen hat eine Einwilligung von dir gespeichert.",
  "privacy.revoke": "Alle widerrufen",
  "privacy.opted_in": "Erlaubt",
  "privacy.opted_out": "Nicht erlaubt",
  "privacy.source.business": "Vom Unternehmen erfasst: {evidence}",
  "privacy.source.customer": "Deine Entscheidung",
  "privacy.allow": "Erlauben",
  "privacy.stop": "Stoppen",
  "safety.title": "Sicherheitsnummer",
  "safety.lead":
    "Vergleiche diese Zahlen mit denen auf dem Gerät von {name}, persönlich oder am Telefon. Stimmen sie überein, sitzt niemand zwischen euch.",
  "error.generic": "Etwas ist schiefgegangen: {message}",
  "error.offline": "Der Server ist nicht erreichbar. Versuche es gleich noch einmal.",
  "error.code": "Fehler {code}: {message}",
  "time.yesterday": "Gestern",
  "status.online": "Online",
};

export type Language = "en" | "de";
const tables: Record<Language, Record<Key, string>> = { en, de };
const STORAGE = "tresen.language";

function initial(): Language {
  const chosen = globalThis.localStorage?.getItem(STORAGE);
  if (chosen === "en" || chosen === "de") return chosen;
  const browser = globalThis.navigator?.language ?? "en";
  return browser.toLowerCase().startsWith("de") ? "de" : "en";
}

let current: Language = initial();

export function language(): Language {
  return current;
}

/** Pick the language; remembered in localStorage (a preference, nothing secret). */
export function setLanguage(next: Language): void {
  current = next;
  globalThis.localStorage?.setItem(STORAGE, next);
  document.documentElement.lang = next;
}

export function t(key: Key, vars: Record<string, string | number> = {}): string {
  return tIn(current, key, vars);
}

/** A text in a given language, whatever the app's language is. */
export function tIn(lang: Language, key: Key, vars: Record<string, string | number> = {}): string {
  const text: string = tables[lang][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`));
}

export function locale(): string {
  return current === "de" ? "de-DE" : "en-GB";
}
