import { classifySmtpAnswer, domainOfAddress, enhancedCodeOf } from "../../services/notifier/smtp-answers";

describe("SMTP answers, by their enhanced status code", () => {
	it.each([
		[421, "421 4.7.0 Try again later, closing connection.", "later"],
		[450, "450 4.2.1 The user you are trying to contact is receiving mail too quickly.", "later"],
		[451, "451 4.3.0 Mail server temporarily rejected message.", "later"],
		[452, "452 4.5.3 Your message has too many recipients.", "later"],
		[550, "550 5.4.5 Daily user sending quota exceeded.", "later"],
		[550, "550 5.1.1 The email account that you tried to reach does not exist.", "final"],
		[554, "554 5.7.1 Message rejected for policy reasons.", "final"],
		[421, "421 Service not available", "later"],
		[550, "550 Requested action not taken: mailbox unavailable", "final"],
		[undefined, undefined, "retry"],
	])("%s %s is %s", (code, response, verdict) => {
		expect(classifySmtpAnswer(code as number | undefined, response as string | undefined)).toBe(verdict);
	});

	it("reads the enhanced code only where RFC 3463 puts it", () => {
		expect(enhancedCodeOf("550-5.4.5 Daily user sending quota exceeded")).toBe("5.4.5");
		expect(enhancedCodeOf("550 quota 5.4.5 later in the text")).toBeNull();
	});

	it("takes Message-ID's domain from MAIL_FROM", () => {
		expect(domainOfAddress("Dopamine Store <no-reply@Shop.Example.com>")).toBe("shop.example.com");
		expect(domainOfAddress("store@example.kr")).toBe("example.kr");
		expect(domainOfAddress("no address here")).toBeNull();
	});
});
