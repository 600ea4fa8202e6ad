// The new-campaign form's attribute conditions: a button adds a row, up to the most the form
// takes (without this script the form shows one empty row more after each review).
(() => {
  "use strict";
  const set = document.querySelector("fieldset.conditions");
  const button = set && set.querySelector("button.add-condition");
  if (!set || !button) return;
  const most = Number(set.dataset.most || "10");
  const rows = () => set.querySelectorAll("div.condition");
  const update = () => {
    button.hidden = rows().length >= most;
  };
  button.addEventListener("click", () => {
    const all = rows();
    const last = all[all.length - 1];
    if (!last || all.length >= most) return;
    const n = all.length + 1;
    const row = last.cloneNode(true);
    row.setAttribute("aria-label", row.getAttribute("aria-label").replace(/\d+$/, String(n)));
    row.querySelectorAll(".field-trouble").forEach((p) => p.remove());
    row.querySelectorAll("input, select").forEach((field) => {
      field.id = field.id.replace(/\d+$/, String(n));
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
      if (field.tagName === "SELECT") field.selectedIndex = 0;
      else field.value = "";
    });
    row.querySelectorAll("label").forEach((label) => {
      label.htmlFor = label.htmlFor.replace(/\d+$/, String(n));
    });
    last.after(row);
    row.querySelector("input").focus();
    update();
  });
  update();
})();
