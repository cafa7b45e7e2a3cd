#include "client/age.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

long long
lms_client_parse_time_ms(const char *text)
{
	int year, mon, day, hour, min, sec, n = 0;
	if (text == NULL || sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec, &n) != 6 ||
	    n != 19)
		return -1;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -1;
	const char *p = text + n;
	long long ms = 0;
	if (*p == '.') {
		long long scale = 100;
		for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
			ms += (*p - '0') * scale;
	}
	long long offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om, m = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5)
			return -1;
		offset_s = (oh * 3600LL + om * 60LL) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	struct tm tm = {
	    .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day, .tm_hour = hour, .tm_min = min, .tm_sec = sec};
	time_t t = timegm(&tm);
	return ((long long)t - offset_s) * 1000 + ms;
}

void
lms_client_human_duration(long long ms, char *buf, size_t size)
{
	long long s = ms / 1000;
	long long minutes = s / 60;
	long long hours = (s + 1800) / 3600; /* rounded, as docker does */
	if (s < 1)
		snprintf(buf, size, "Less than a second");
	else if (s == 1)
		snprintf(buf, size, "1 second");
	else if (s < 60)
		snprintf(buf, size, "%lld seconds", s);
	else if (minutes == 1)
		snprintf(buf, size, "About a minute");
	else if (minutes < 60)
		snprintf(buf, size, "%lld minutes", minutes);
	else if (hours == 1)
		snprintf(buf, size, "About an hour");
	else if (hours < 48)
		snprintf(buf, size, "%lld hours", hours);
	else if (hours < 24 * 7 * 2)
		snprintf(buf, size, "%lld days", hours / 24);
	else if (hours < 24 * 30 * 2)
		snprintf(buf, size, "%lld weeks", hours / 24 / 7);
	else if (hours < 24 * 365 * 2)
		snprintf(buf, size, "%lld months", hours / 24 / 30);
	else
		snprintf(buf, size, "%lld years", hours / 24 / 365);
}

void
lms_client_relative_time(long long then, long long now, char *buf, size_t size)
{
	if (then < 0) {
		snprintf(buf, size, "%s", "");
		return;
	}
	char span[64];
	lms_client_human_duration(then <= now ? now - then : then - now, span, sizeof(span));
	if (then <= now) {
		snprintf(buf, size, "%s ago", span);
	} else {
		span[0] = (char)tolower((unsigned char)span[0]);
		snprintf(buf, size, "in %s", span);
	}
}
